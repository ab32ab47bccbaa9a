"""Alert rules evaluated on a ticker's windows, with cooldown and a deterministic alert id.

An alert is evaluated at a released event (see :mod:`apps.finance_monitor.windows`); its id
is a hash of (ticker, rule, window, that event's time and id), so reprocessing the same
partition after a crash or a rebalance yields the same id and the sinks can drop the copy.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from apps.finance_monitor.rules import Rule, RulesConfig
from apps.finance_monitor.windows import Event, TickerWindows, WindowStats

# A baseline with (nearly) constant sentiment would make any dip look infinitely significant.
MIN_BASELINE_STD = 0.1


@dataclass(frozen=True)
class Alert:
    """What a person or a downstream system receives; ``ts`` is the triggering event time (ISO-8601 UTC)."""

    alert_id: str
    ticker: str
    rule: str
    kind: str
    window: str
    figures: dict
    evidence: list[dict]
    model_version: str
    ts: str
    event_ts: float

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One line for terminals and chat."""
        figures = ", ".join(f"{k}={v}" for k, v in self.figures.items())
        return f"{self.ts} {self.ticker} {self.rule} [{self.window}] {figures}"


def alert_id(ticker: str, rule: str, window: str, event: Event) -> str:
    key = f"{ticker}|{rule}|{window}|{event.ts:.3f}|{event.id}"
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:24]


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _figures(rule: Rule, stats: WindowStats, base: WindowStats | None, ratio: float) -> dict | None:
    """The numbers that fire ``rule``, or None when it does not fire.

    ``base`` is the baseline window minus the rule's window; ``ratio`` = window length /
    (baseline length - window length), which scales the baseline's count to one window.
    """
    if stats.count < rule.min_count:
        return None
    figures = {"count": stats.count, "mean_sentiment": round(stats.mean, 4),
               "negative_share": round(stats.negative_share, 4)}
    if rule.kind == "negative_share":
        if stats.negative_share <= rule.value:
            return None
        return {**figures, "negatives": stats.negatives, "threshold": rule.value}
    if base is None or base.count < rule.min_baseline:
        return None
    if rule.kind == "zscore_drop":
        std = max(math.sqrt(base.variance), MIN_BASELINE_STD)
        z = (stats.mean - base.mean) / (std / math.sqrt(stats.count))
        if z > -rule.value:
            return None
        return {**figures, "baseline_count": base.count, "baseline_mean": round(base.mean, 4),
                "baseline_std": round(std, 4), "z": round(z, 3), "threshold": -rule.value}
    # volume_burst: the baseline's rest predicts count * window / (baseline - window) messages
    expected = base.count * ratio
    if stats.count < rule.value * max(expected, 1.0):
        return None
    return {**figures, "baseline_count": base.count, "expected": round(expected, 2),
            "ratio": round(stats.count / max(expected, 1e-9), 2), "threshold": rule.value}


def _window_ratio(state: TickerWindows, config: RulesConfig, rule: Rule, now: float) -> float:
    """Window length / the span the rest of the baseline really covers.

    Early in a ticker's history the baseline holds less than its full length; dividing by
    the full length would make ordinary traffic look like a burst. The covered span runs
    from the oldest baseline event to the window's start, clipped to [window / 10, baseline - window].
    """
    length, baseline = config.windows[rule.window], config.windows[rule.baseline]
    oldest = state.oldest_ts(rule.baseline)
    covered = baseline - length if oldest is None else (now - length) - oldest
    return length / min(max(covered, length / 10), baseline - length)


def _evidence(rule: Rule, events: list[Event], size: int) -> list[dict]:
    """The messages that contributed most: the most negative ones, or the latest ones for volume."""
    if rule.kind == "volume_burst":
        chosen = sorted(events, key=lambda e: e.key, reverse=True)[:size]
    else:
        chosen = sorted(events, key=lambda e: (e.score, -e.ts, e.id))[:size]
    return [{"id": e.id, "text": e.text, "ts": iso(e.ts), "sentiment": round(e.score, 4),
             "label": "negative" if e.negative else "non-negative"} for e in chosen]


def evaluate(ticker: str, state: TickerWindows, config: RulesConfig, event: Event, model_version: str) -> list[Alert]:
    """Rules that fire at ``event`` (just released into ``state``) and are out of cooldown; records them."""
    alerts = []
    for rule in config.rules:
        last = state.last_alert.get(rule.name)
        if last is not None and event.ts - last < rule.cooldown_s:
            continue
        stats = state.stats(rule.window)
        base, ratio = None, 0.0
        if rule.baseline is not None:
            base = state.stats(rule.baseline).minus(stats)
            ratio = _window_ratio(state, config, rule, event.ts)
        figures = _figures(rule, stats, base, ratio)
        if figures is None:
            continue
        state.last_alert[rule.name] = event.ts
        alerts.append(Alert(
            alert_id=alert_id(ticker, rule.name, rule.window, event), ticker=ticker, rule=rule.name, kind=rule.kind,
            window=rule.window, figures=figures, evidence=_evidence(rule, state.events(rule.window), config.evidence),
            model_version=model_version, ts=iso(event.ts), event_ts=event.ts,
        ))
    return alerts
