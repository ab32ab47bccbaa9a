"""Action latency for the support desk, read from the action server's Prometheus histogram.

The histogram (``metrics.BotMetrics.latency``, ``cs_action_seconds``) is cumulative since the
server started, so it answers "how fast since start" but not "how fast lately". The desk samples
it now and then (:meth:`LatencyTrack.sample`); the difference between two samples is the
histogram of the calls in between, and its p50 / p95 is one point of the latency-over-time chart.
The event log is not used: it has no timings, and the histogram already has them all.

Quantiles are estimated as Prometheus' ``histogram_quantile`` does: linear inside the bucket that
holds the rank, so they are only as fine as the buckets (5 ms to 10 s, ``metrics.LATENCY_BUCKETS``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from apps.customer_service.events import iso

KEEP_SAMPLES = 24 * 60  # one a minute for a day


@dataclass(frozen=True)
class Buckets:
    """One histogram state: upper bounds (seconds, ``inf`` last), cumulative counts, and the sum of durations."""

    bounds: tuple[float, ...]
    cumulative: tuple[float, ...]
    total_seconds: float

    @property
    def count(self) -> float:
        return self.cumulative[-1] if self.cumulative else 0.0

    def minus(self, earlier: Buckets) -> Buckets:
        """The calls observed after ``earlier`` (same bounds; a restarted histogram counts from zero)."""
        if earlier.bounds != self.bounds or earlier.count > self.count:
            return self
        return Buckets(self.bounds, tuple(a - b for a, b in zip(self.cumulative, earlier.cumulative, strict=True)),
                       self.total_seconds - earlier.total_seconds)

    def quantile(self, q: float) -> float | None:
        """The ``q``-quantile in seconds (0 < q < 1), or None with no calls; capped at the last finite bound."""
        if not 0.0 < q < 1.0:
            raise ValueError(f"q={q} is out of range; expected a quantile strictly between 0 and 1, e.g. 0.95")
        if self.count <= 0:
            return None
        rank = q * self.count
        lower_bound, lower_count = 0.0, 0.0
        for bound, cumulative in zip(self.bounds, self.cumulative, strict=True):
            if cumulative >= rank:
                if math.isinf(bound):  # above the last finite bucket: say that bucket's bound, as Prometheus does
                    return lower_bound
                inside = cumulative - lower_count
                return lower_bound + (bound - lower_bound) * ((rank - lower_count) / inside if inside else 1.0)
            lower_bound, lower_count = bound, cumulative
        return lower_bound


def read_histogram(histogram) -> dict[str, Buckets]:
    """Per label value (the action name), the state of a one-label ``prometheus_client.Histogram``."""
    bounds: dict[str, dict[float, float]] = {}
    sums: dict[str, float] = {}
    for family in histogram.collect():
        for sample in family.samples:
            action = next((value for key, value in sample.labels.items() if key != "le"), "")
            if sample.name.endswith("_bucket"):
                bounds.setdefault(action, {})[float(sample.labels["le"])] = sample.value
            elif sample.name.endswith("_sum"):
                sums[action] = sample.value
    return {action: Buckets(tuple(sorted(counts)), tuple(counts[b] for b in sorted(counts)), sums.get(action, 0.0))
            for action, counts in bounds.items()}


def combined(states: Sequence[Buckets]) -> Buckets | None:
    """All actions together (they share the bounds), or None when there are none."""
    if not states:
        return None
    bounds = states[0].bounds
    return Buckets(bounds, tuple(sum(s.cumulative[i] for s in states) for i in range(len(bounds))),
                   sum(s.total_seconds for s in states))


def summary_row(name: str, state: Buckets) -> dict:
    count = state.count
    p50, p95 = state.quantile(0.5), state.quantile(0.95)
    return {"action": name, "calls": int(count), "mean_ms": round(1000 * state.total_seconds / count, 1) if count
            else None, "p50_ms": None if p50 is None else round(1000 * p50, 1),
            "p95_ms": None if p95 is None else round(1000 * p95, 1)}


class LatencyTrack:
    """Samples of the latency histogram over time; ``histogram`` is ``BotMetrics.latency``."""

    def __init__(self, histogram, keep: int = KEEP_SAMPLES) -> None:
        self.histogram = histogram
        self.keep = keep
        self._samples: deque[tuple[datetime, Buckets]] = deque(maxlen=keep)

    def sample(self, now: datetime) -> None:
        """Remember the histogram as it is ``now`` (all actions together)."""
        state = combined(list(read_histogram(self.histogram).values()))
        if state is not None:
            self._samples.append((now, state))

    def series(self, since: datetime, now: datetime | None = None) -> list[dict]:
        """One point per sampling interval ending after ``since``: its end, calls, p50 and p95 in ms.

        With ``now``, a last point for the calls since the latest sample (so a call shows within a poll,
        not a minute later), when there were any.
        """
        samples = list(self._samples)
        pairs = list(zip(samples, samples[1:], strict=False))
        if now is not None and samples:
            current = combined(list(read_histogram(self.histogram).values()))
            if current is not None and current.minus(samples[-1][1]).count > 0:
                pairs.append((samples[-1], (now, current)))
        points = []
        for (_, before), (at, after) in pairs:
            if at < since:
                continue
            delta = after.minus(before)
            p50, p95 = delta.quantile(0.5), delta.quantile(0.95)
            points.append({"at": iso(at), "calls": int(delta.count),
                           "p50_ms": None if p50 is None else round(1000 * p50, 1),
                           "p95_ms": None if p95 is None else round(1000 * p95, 1)})
        return points

    def summary(self) -> dict:
        """Since the server started: every action together (``all``) and each action."""
        states = read_histogram(self.histogram)
        total = combined(list(states.values()))
        return {"all": summary_row("all", total) if total else None,
                "actions": [summary_row(name, state) for name, state in sorted(states.items()) if state.count]}
