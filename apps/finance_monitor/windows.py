"""Per-ticker sliding event-time windows with out-of-order tolerance.

Events enter a reorder buffer and are *released* in event-time order once the ticker's
watermark (its largest event time minus ``allowed_lateness``) has passed them; an event
older than the last released one arrives too late and is dropped (and counted). Released
events feed every window incrementally: a window of length ``w`` evaluated at a released
event of time ``t`` holds the released events with ``t - w < ts <= t``. Rules are evaluated
per released event, so the outcome depends only on the order of the partition, never on
how the stream happened to cut it into batches: a replay raises the same alerts.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    """One scored message for one ticker. ``score`` = p(positive) - p(negative), in [-1, 1]."""

    ts: float
    seq: int          # arrival order within the partition: breaks ties between equal times
    id: str
    score: float
    negative: bool
    text: str

    @property
    def key(self) -> tuple[float, int]:
        return (self.ts, self.seq)


@dataclass(frozen=True)
class WindowStats:
    """Count, mean sentiment, its variance and the negative share of one window at one time."""

    count: int
    total: float
    total_sq: float
    negatives: int

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    @property
    def variance(self) -> float:
        return max(self.total_sq / self.count - self.mean ** 2, 0.0) if self.count else 0.0

    @property
    def negative_share(self) -> float:
        return self.negatives / self.count if self.count else 0.0

    def minus(self, inner: WindowStats) -> WindowStats:
        """The events of this window that are not in ``inner`` (a shorter window ending at the same time)."""
        return WindowStats(self.count - inner.count, self.total - inner.total, self.total_sq - inner.total_sq,
                           self.negatives - inner.negatives)


class SlidingWindow:
    """Released events of the last ``length_s`` seconds with running sums (O(1) per event)."""

    def __init__(self, length_s: float) -> None:
        self.length_s = length_s
        self.events: deque[Event] = deque()
        self._total = self._total_sq = 0.0
        self._negatives = 0

    def add(self, event: Event) -> None:
        self.events.append(event)
        self._total += event.score
        self._total_sq += event.score * event.score
        self._negatives += event.negative
        self.evict(event.ts)

    def evict(self, now: float) -> None:
        while self.events and self.events[0].ts <= now - self.length_s:
            old = self.events.popleft()
            self._total -= old.score
            self._total_sq -= old.score * old.score
            self._negatives -= old.negative
        if not self.events:  # reset the sums so float drift cannot accumulate over quiet periods
            self._total = self._total_sq = 0.0

    def stats(self) -> WindowStats:
        return WindowStats(len(self.events), self._total, self._total_sq, self._negatives)


class TickerWindows:
    """One ticker's reorder buffer, named windows, watermark and last alert time per rule."""

    def __init__(self, windows: dict[str, float], allowed_lateness_s: float) -> None:
        self.allowed_lateness_s = allowed_lateness_s
        self.windows = {name: SlidingWindow(length) for name, length in windows.items()}
        self.max_ts = -math.inf
        self.released: tuple[float, int] = (-math.inf, -1)  # key of the last released event
        self.last_alert: dict[str, float] = {}               # rule name -> event time of its last alert
        self._buffer: list[tuple[float, int, Event]] = []

    @property
    def watermark(self) -> float:
        return self.max_ts - self.allowed_lateness_s

    def offer(self, event: Event) -> bool:
        """Buffer ``event``; False when it is too late (older than an event already released)."""
        if event.key < self.released:
            return False
        heapq.heappush(self._buffer, (event.ts, event.seq, event))
        self.max_ts = max(self.max_ts, event.ts)
        return True

    def release(self) -> Iterator[Event]:
        """Release buffered events up to the watermark, in event-time order, into every window."""
        while self._buffer and self._buffer[0][0] <= self.watermark:
            _, _, event = heapq.heappop(self._buffer)
            self.restore_released(event)
            yield event

    def restore_released(self, event: Event) -> None:
        """Put an already released event into the windows (also used to rebuild state from a checkpoint)."""
        for window in self.windows.values():
            window.add(event)
        self.released = event.key

    def restore_buffered(self, event: Event) -> None:
        """Put a not yet released event back into the buffer (rebuilding state)."""
        heapq.heappush(self._buffer, (event.ts, event.seq, event))

    def stats(self, name: str) -> WindowStats:
        return self.windows[name].stats()

    def oldest_ts(self, name: str) -> float | None:
        """Time of the oldest event still in window ``name`` (how much history the window really covers)."""
        events = self.windows[name].events
        return events[0].ts if events else None

    def events(self, name: str) -> list[Event]:
        return list(self.windows[name].events)

    @property
    def buffered(self) -> int:
        return len(self._buffer)
