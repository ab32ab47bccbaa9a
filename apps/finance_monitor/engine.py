"""The pure per-batch step of the stream: validate, score, window, alert. No Kafka, no disk.

:meth:`AlertEngine.process` takes a batch of raw records and a scorer and returns everything
the I/O shell must write (scored records, dead letters, alerts, window events and the next
offsets), so the shell only moves bytes and the logic is unit-tested without a broker.
Window state lives per input partition: producers key messages by ticker, so a ticker's
window sits in exactly one partition and moves with it on a rebalance.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from apps.finance_monitor.alerts import Alert, evaluate, iso
from apps.finance_monitor.messages import DeadLetter, MessageLimits, NewsMessage, parse_message
from apps.finance_monitor.rules import RulesConfig
from apps.finance_monitor.tickers import TickerExtractor
from apps.finance_monitor.windows import Event, TickerWindows

log = logging.getLogger(__name__)

EVIDENCE_TEXT_CHARS = 280
Partition = tuple[str, int]  # (topic, partition)


@dataclass(frozen=True)
class Record:
    """The parts of a Kafka record the engine reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


@dataclass(frozen=True)
class Score:
    """A classifier's verdict on one text; ``sentiment`` = p(positive) - p(negative)."""

    label: str
    probabilities: dict[str, float]
    sentiment: float


Scorer = Callable[[list[str]], list[Score]]


@dataclass
class PartitionState:
    """Window state of one input partition: ticker -> windows."""

    tickers: dict[str, TickerWindows] = field(default_factory=dict)


@dataclass
class BatchResult:
    """What one batch produced; the shell writes it all, then commits ``offsets``."""

    scored: list[tuple[bytes | None, dict]] = field(default_factory=list)
    dead: list[tuple[bytes | None, dict]] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    events: list[tuple[Partition, str, Event]] = field(default_factory=list)
    touched: dict[tuple[Partition, str], TickerWindows] = field(default_factory=dict)
    offsets: dict[Partition, int] = field(default_factory=dict)
    late: int = 0


class AlertEngine:
    """Holds window state per partition and turns batches of records into outputs."""

    def __init__(self, rules: RulesConfig, extractor: TickerExtractor, limits: MessageLimits,
                 model_version: str) -> None:
        self.rules = rules
        self.extractor = extractor
        self.limits = limits
        self.model_version = model_version
        self.partitions: dict[Partition, PartitionState] = {}

    def new_ticker_state(self) -> TickerWindows:
        return TickerWindows(self.rules.windows, self.rules.allowed_lateness_s)

    def drop(self, partition: Partition) -> None:
        """Forget a partition's state (it was revoked; its new owner rebuilds it from the checkpoint)."""
        self.partitions.pop(partition, None)

    def process(self, records: Sequence[Record], scorer: Scorer) -> BatchResult:
        result = BatchResult()
        valid: list[tuple[Record, NewsMessage, tuple[str, ...]]] = []
        for record in records:
            result.offsets[(record.topic, record.partition)] = record.offset + 1
            parsed = parse_message(record.value, record.timestamp_ms / 1000.0, self.limits)
            if isinstance(parsed, DeadLetter):
                result.dead.append((record.key, self._dead_letter(record, parsed)))
                continue
            tickers = parsed.tickers or self.extractor.extract(parsed.text)
            valid.append((record, parsed, tickers))
        scores = scorer([message.text for _, message, _ in valid]) if valid else []
        for (record, message, tickers), score in zip(valid, scores, strict=True):
            result.scored.append((record.key, self._scored(record, message, tickers, score)))
            event = Event(ts=message.ts, seq=record.offset, id=message.id, score=score.sentiment,
                          negative=score.label == "negative", text=message.text[:EVIDENCE_TEXT_CHARS])
            for ticker in self._owned_tickers(record, tickers):
                self._add(result, (record.topic, record.partition), ticker, event)
        return result

    @staticmethod
    def _owned_tickers(record: Record, tickers: tuple[str, ...]) -> tuple[str, ...]:
        """A record keyed by one of its tickers updates only that ticker's window (the others were fanned out
        to their own partitions by the producer); an unkeyed record updates all of its tickers."""
        key = record.key.decode("utf-8", "replace").upper() if record.key else None
        return (key,) if key in tickers else tickers

    def _add(self, result: BatchResult, partition: Partition, ticker: str, event: Event) -> None:
        state = self.partitions.setdefault(partition, PartitionState())
        windows = state.tickers.get(ticker)
        if windows is None:
            windows = state.tickers[ticker] = self.new_ticker_state()
        if not windows.offer(event):
            result.late += 1
            log.debug("late event %s for %s at %s dropped", event.id, ticker, iso(event.ts))
            return
        result.events.append((partition, ticker, event))
        result.touched[(partition, ticker)] = windows
        for released in windows.release():
            result.alerts.extend(evaluate(ticker, windows, self.rules, released, self.model_version))

    def _scored(self, record: Record, message: NewsMessage, tickers: tuple[str, ...], score: Score) -> dict:
        return {
            "id": message.id, "ts": iso(message.ts), "event_ts": message.ts, "source": message.source,
            "text": message.text, "tickers": list(tickers), "label": score.label,
            "probabilities": {k: round(v, 5) for k, v in score.probabilities.items()},
            "sentiment": round(score.sentiment, 5), "model_version": self.model_version,
            "input": {"topic": record.topic, "partition": record.partition, "offset": record.offset},
        }

    @staticmethod
    def _dead_letter(record: Record, dead: DeadLetter) -> dict:
        raw = record.value or b""
        return {
            "reason": dead.reason, "detail": dead.detail,
            "value": raw[:2000].decode("utf-8", "replace"), "value_bytes": len(raw),
            "input": {"topic": record.topic, "partition": record.partition, "offset": record.offset,
                      "timestamp_ms": record.timestamp_ms},
        }
