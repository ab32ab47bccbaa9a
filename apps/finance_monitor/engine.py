"""The pure per-batch step of the stream: validate, score, window, alert. No Kafka, no disk.

:meth:`AlertEngine.process` takes a batch of raw records and a scorer and returns everything
the I/O shell must write (scored records, dead letters, alerts, window events and the next
offsets), so the shell only moves bytes and the logic is unit-tested without a broker.
Window state lives per input partition: producers key messages by ticker, so a ticker's
window sits in exactly one partition and moves with it on a rebalance.

Two rules make the stream exactly-once on top of Kafka transactions (see ``stream.py``):

* **Redo without recount.** ``PartitionState.applied`` is the next offset already applied to
  the state (the store's checkpoint). A record below it is redone: it is scored and its outputs
  are produced again, but it does not touch the windows, the seen ids or the alerts (the shell
  re-publishes that record's stored alerts). Since the changelog records are part of the batch's
  transaction and the store commits after Kafka, the state is not ahead of the committed offset
  in normal operation; this guards a store put back from elsewhere (a backup, say).
* **Duplicates.** A message whose ``(record key, id)`` was already scored in the same partition
  within the last ``dedup_records`` offsets is skipped: not scored, not produced, not counted
  (``BatchResult.duplicates``). The horizon is counted in offsets, so the verdict depends only on
  the partition's order (alerts stay deterministic), and it covers what a producer retry or a
  re-run replay of a file leaves behind. A message fanned out to several tickers is several
  records with different keys, so each ticker still counts it once.

A third mode rebuilds lost state: ``PartitionState.rebuild_until`` (set when a partition's changelog
was lost and the group's committed offset is ahead of the state) makes records below it count for
the state only (windows, seen ids, cooldowns, alerts kept as history in ``replayed_alerts``) with no
output and no offset to commit: their outputs are already committed.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
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
    """State of one input partition: ticker -> windows, the ids seen, and how far the state reaches.

    ``seen`` maps ``dedup_key`` to the offset of the record that was scored, oldest first;
    ``applied`` is the next offset already applied (None: nothing yet); records below ``rebuild_until``
    are re-read from the input to rebuild lost state (state only, no outputs).
    """

    tickers: dict[str, TickerWindows] = field(default_factory=dict)
    seen: OrderedDict[str, int] = field(default_factory=OrderedDict)
    applied: int | None = None
    rebuild_until: int | None = None


def dedup_key(key: bytes | None, message_id: str) -> str:
    """What makes two records the same message: the record key (the ticker it was fanned out to) and the id."""
    return f"{key.decode('utf-8', 'replace') if key else ''}|{message_id}"


@dataclass
class BatchResult:
    """What one batch produced; the shell writes it all, then commits ``offsets``.

    ``applied_before``/``applied``: each partition's applied mark before and after the batch (the
    store checks the first against its checkpoint and writes the second); ``redone``: the first and
    last offset of the records redone per partition, whose stored alerts the shell publishes again;
    ``origins``: alert id -> (partition, offset of the record whose processing raised it);
    ``replayed_alerts``: raised again while rebuilding state from the input (history, not published again).
    """

    scored: list[tuple[bytes | None, dict]] = field(default_factory=list)
    dead: list[tuple[bytes | None, dict]] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    replayed_alerts: list[Alert] = field(default_factory=list)
    origins: dict[str, tuple[Partition, int]] = field(default_factory=dict)
    events: list[tuple[Partition, str, Event]] = field(default_factory=list)
    touched: dict[tuple[Partition, str], TickerWindows] = field(default_factory=dict)
    seen: list[tuple[Partition, str, int]] = field(default_factory=list)
    offsets: dict[Partition, int] = field(default_factory=dict)
    applied_before: dict[Partition, int | None] = field(default_factory=dict)
    applied: dict[Partition, int] = field(default_factory=dict)
    redone: dict[Partition, tuple[int, int]] = field(default_factory=dict)
    late: int = 0
    duplicates: int = 0
    rebuilt: int = 0  # records applied to the state only (rebuild from the input)


class AlertEngine:
    """Holds window state per partition and turns batches of records into outputs."""

    def __init__(self, rules: RulesConfig, extractor: TickerExtractor, limits: MessageLimits,
                 model_version: str, dedup_records: int = 100_000) -> None:
        self.rules = rules
        self.extractor = extractor
        self.limits = limits
        self.model_version = model_version
        self.dedup_records = dedup_records  # offsets per partition within which an id counts once; 0: no dedup
        self.partitions: dict[Partition, PartitionState] = {}

    def new_ticker_state(self) -> TickerWindows:
        return TickerWindows(self.rules.windows, self.rules.allowed_lateness_s)

    def drop(self, partition: Partition) -> None:
        """Forget a partition's state (it was revoked; its new owner rebuilds it from the checkpoint)."""
        self.partitions.pop(partition, None)

    def process(self, records: Sequence[Record], scorer: Scorer) -> BatchResult:
        """Records in partition order (offsets increasing per partition) -> everything to write."""
        result = BatchResult()
        valid: list[tuple[Record, NewsMessage, tuple[str, ...], bool, bool]] = []  # ..., redo, rebuild
        for record in records:
            partition = (record.topic, record.partition)
            state = self.partitions.setdefault(partition, PartitionState())
            result.applied_before.setdefault(partition, state.applied)
            rebuild = state.rebuild_until is not None and record.offset < state.rebuild_until
            if rebuild:
                result.rebuilt += 1
            else:
                result.offsets[partition] = record.offset + 1
            redo = state.applied is not None and record.offset < state.applied
            if redo:
                first, last = result.redone.get(partition, (record.offset, record.offset))
                result.redone[partition] = (min(first, record.offset), max(last, record.offset))
            else:
                state.applied = result.applied[partition] = record.offset + 1
            parsed = parse_message(record.value, record.timestamp_ms / 1000.0, self.limits)
            if isinstance(parsed, DeadLetter):
                if not rebuild:
                    result.dead.append((record.key, self._dead_letter(record, parsed)))
                continue
            if self._duplicate(state, partition, record, parsed.id, redo, result):
                continue
            tickers = parsed.tickers or self.extractor.extract(parsed.text)
            valid.append((record, parsed, tickers, redo, rebuild))
        scores = scorer([message.text for _, message, _, _, _ in valid]) if valid else []
        for (record, message, tickers, redo, rebuild), score in zip(valid, scores, strict=True):
            if not rebuild:
                result.scored.append((record.key, self._scored(record, message, tickers, score)))
            if redo:
                continue
            event = Event(ts=message.ts, seq=record.offset, id=message.id, score=score.sentiment,
                          negative=score.label == "negative", text=message.text[:EVIDENCE_TEXT_CHARS])
            for ticker in self._owned_tickers(record, tickers):
                self._add(result, record, ticker, event, rebuild)
        if self.dedup_records:
            for partition, applied in result.applied.items():
                seen = self.partitions[partition].seen
                while seen and next(iter(seen.values())) < applied - self.dedup_records:
                    seen.popitem(last=False)
        return result

    def _duplicate(self, state: PartitionState, partition: Partition, record: Record, message_id: str, redo: bool,
                   result: BatchResult) -> bool:
        """Whether the record repeats a message already scored; a first sighting is remembered (not on a redo,
        whose verdict was taken and stored the first time: the record is the original iff it is the one seen)."""
        if not self.dedup_records:
            return False
        key = dedup_key(record.key, message_id)
        first = state.seen.get(key)
        if redo:
            return first is not None and first != record.offset
        if first is not None:
            result.duplicates += 1
            log.debug("duplicate of %s (offset %d) at %s[%d]@%d skipped", message_id, first, *partition, record.offset)
            return True
        state.seen[key] = record.offset
        result.seen.append((partition, key, record.offset))
        return False

    @staticmethod
    def _owned_tickers(record: Record, tickers: tuple[str, ...]) -> tuple[str, ...]:
        """A record keyed by one of its tickers updates only that ticker's window (the others were fanned out
        to their own partitions by the producer); an unkeyed record updates all of its tickers."""
        key = record.key.decode("utf-8", "replace").upper() if record.key else None
        return (key,) if key in tickers else tickers

    def _add(self, result: BatchResult, record: Record, ticker: str, event: Event, rebuild: bool) -> None:
        partition = (record.topic, record.partition)
        state = self.partitions[partition]
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
            for alert in evaluate(ticker, windows, self.rules, released, self.model_version):
                (result.replayed_alerts if rebuild else result.alerts).append(alert)
                result.origins[alert.alert_id] = (partition, record.offset)

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
