"""Rebalance and abort bookkeeping of the stream: a partition that is (re)assigned, or whose batch's
transaction was aborted, is restored from SQLite and read again from the group's committed offset.

kafka-python 3 keeps a partition's fetch position when the same consumer is assigned it
again, so the processor has to seek; these tests pin where it seeks. The consumer and producer
here are small recording stand-ins (the real-broker scenarios live in test_stream_kafka.py and
test_exactly_once.py).
"""

from __future__ import annotations

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaError, ProducerFencedError

from apps.finance_monitor.engine import AlertEngine, Record
from apps.finance_monitor.messages import MessageLimits
from apps.finance_monitor.settings import StreamConfig
from apps.finance_monitor.store import AlertStore
from apps.finance_monitor.stream import MAX_ABORTS, StreamProcessor, _Rebalance
from apps.finance_monitor.tickers import TickerExtractor

from .helpers import keyword_scorer, record, rules


class RecordingConsumer:
    def __init__(self, committed: dict[TopicPartition, int] | None = None) -> None:
        self.offsets = dict(committed or {})
        self.seeks: dict[TopicPartition, int | str] = {}
        self.assigned: set[TopicPartition] = set()

    def committed(self, partition: TopicPartition) -> int | None:
        return self.offsets.get(partition)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks[partition] = offset

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self.seeks.update(dict.fromkeys(partitions, "beginning"))

    def assignment(self) -> set[TopicPartition]:
        return self.assigned


def processor(tmp_path, committed: dict[TopicPartition, int] | None = None) -> StreamProcessor:
    engine = AlertEngine(rules(), TickerExtractor({"NOVA": ("Novagen",)}), MessageLimits(), "test:v1")
    stream = StreamProcessor(StreamConfig(db_path=tmp_path / "alerts.db"), engine, keyword_scorer)
    stream.store = AlertStore(tmp_path / "alerts.db")
    stream.consumer = RecordingConsumer(committed)
    return stream


def fetched(partition: int, *offsets: int) -> list[Record]:
    return [record(offset, 1_767_600_000.0 + offset, "Novagen files its annual report", partition=partition)
            for offset in offsets]


NEWS0, NEWS1, NEWS2 = TopicPartition("news", 0), TopicPartition("news", 1), TopicPartition("news", 2)


def test_a_partition_that_comes_back_is_read_again_from_the_committed_offset(tmp_path):
    stream = processor(tmp_path, committed={NEWS0: 3})
    stream._pending = fetched(0, 3, 4, 5) + fetched(1, 5, 6)

    stream.on_revoked([NEWS0, NEWS1])
    assert stream._pending == []
    stream.on_assigned([NEWS0, NEWS1])

    assert stream.consumer.seeks == {NEWS0: 3, NEWS1: "beginning"}  # nothing committed yet: from the start


def test_a_checkpoint_ahead_of_the_committed_offset_is_redone_without_counting_twice(tmp_path):
    """The batch reached SQLite but its transaction did not commit: its records are read again for their
    outputs, while the restored state already holds them."""
    stream = processor(tmp_path, committed={NEWS0: 2})
    first = stream.engine.process(fetched(0, 0, 1), keyword_scorer)
    stream.store.write_batch(first, stream.engine.rules.longest_window_s)
    lost = stream.engine.process(fetched(0, 2, 3, 4), keyword_scorer)  # SQLite yes, Kafka no
    stream.store.write_batch(lost, stream.engine.rules.longest_window_s)

    stream.on_assigned([NEWS0])
    assert stream.consumer.seeks == {NEWS0: 2}
    assert stream.engine.partitions[("news", 0)].applied == 5
    redo = stream.engine.process(fetched(0, 2, 3, 4, 5), keyword_scorer)
    assert [s["id"] for _, s in redo.scored] == ["m2", "m3", "m4", "m5"]  # every output again ...
    assert [e.id for _, _, e in redo.events] == ["m5"]  # ... but only the new record enters the windows
    assert redo.redone == {("news", 0): (2, 4)} and redo.applied == {("news", 0): 6}


def test_the_listener_only_queues_and_the_loop_applies_in_order(tmp_path):
    """kafka-python 3 calls the listener on its IO thread: state changes must wait for the loop."""
    stream = processor(tmp_path, committed={NEWS0: 3})
    listener = _Rebalance(stream._rebalances)
    stream._pending = fetched(0, 3, 4)

    listener.on_partitions_revoked([NEWS0])
    listener.on_partitions_assigned([NEWS0])
    assert len(stream._pending) == 2 and stream.consumer.seeks == {}  # nothing touched off the loop's thread

    assert stream._apply_rebalances() is True
    assert stream._pending == [] and stream.consumer.seeks == {NEWS0: 3}
    assert stream._apply_rebalances() is False


def test_records_fetched_before_an_assignment_is_applied_are_read_again_from_the_committed_offset(tmp_path):
    """A poll can return records from kafka-python's own position before the loop applies the
    assignment; they are dropped and the partition re-read from the committed offset."""
    stream = processor(tmp_path, committed={NEWS2: 6})
    stream._pending = fetched(2, 7, 8) + fetched(1, 0)

    stream.on_assigned([NEWS2])

    assert [(r.partition, r.offset) for r in stream._pending] == [(1, 0)] and stream.consumer.seeks == {NEWS2: 6}


class RecordingProducer:
    def __init__(self, abort_fails: bool = False) -> None:
        self.aborts = 0
        self.abort_fails = abort_fails

    def abort_transaction(self) -> None:
        if self.abort_fails:
            raise ProducerFencedError()
        self.aborts += 1


def test_an_aborted_batch_is_redone_from_the_committed_offsets_of_its_assigned_partitions(tmp_path, monkeypatch):
    monkeypatch.setattr("apps.finance_monitor.stream.time.sleep", lambda s: None)
    stream = processor(tmp_path, committed={NEWS0: 4})
    stream.producer = RecordingProducer()
    stream.consumer.assigned = {NEWS0}  # news[1] was revoked meanwhile: its next owner redoes it
    result = stream.engine.process(fetched(0, 4, 5) + fetched(1, 0), keyword_scorer)

    stream._abort(KafkaError("the broker refused the offsets"), result)

    assert stream.producer.aborts == 1 and stream.consumer.seeks == {NEWS0: 4}
    assert stream.engine.partitions[("news", 0)].applied is None  # reloaded from SQLite, which holds nothing yet
    with pytest.raises(KafkaError, match="could not be committed"):
        for _ in range(MAX_ABORTS):
            stream._abort(KafkaError("again"), result)


def test_an_abort_that_fails_is_fatal(tmp_path):
    stream = processor(tmp_path)
    stream.producer = RecordingProducer(abort_fails=True)
    result = stream.engine.process(fetched(0, 0), keyword_scorer)
    with pytest.raises(ProducerFencedError):
        stream._abort(KafkaError("fenced"), result)
