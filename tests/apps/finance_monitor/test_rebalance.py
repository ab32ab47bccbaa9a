"""Rebalance and abort bookkeeping of the stream: a partition that is (re)assigned, or whose batch's
transaction was aborted, is restored from its store and changelog and read again from the group's
committed offset; one whose changelog lost the state is rebuilt from the input's earliest offset.

kafka-python 3 keeps a partition's fetch position when the same consumer is assigned it
again, so the processor has to seek; these tests pin where it seeks. The consumer and producer
here are small recording stand-ins, the changelog an empty one (the real-broker scenarios live in
test_stream_kafka.py, test_exactly_once.py and test_changelog_kafka.py).
"""

from __future__ import annotations

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaError, ProducerFencedError

from apps.finance_monitor.engine import AlertEngine, Record
from apps.finance_monitor.messages import MessageLimits
from apps.finance_monitor.settings import StreamConfig
from apps.finance_monitor.store import StateStore
from apps.finance_monitor.stream import MAX_ABORTS, StreamProcessor, _Rebalance
from apps.finance_monitor.tickers import TickerExtractor

from .helpers import keyword_scorer, record, rules, write_batch


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

    def beginning_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(partitions, 0)

    def assignment(self) -> set[TopicPartition]:
        return self.assigned


class EmptyChangelog:
    """A changelog with nothing in it beyond what the local store already reflects."""

    topic = "test-changelog"

    def bounds(self, partition: int) -> tuple[int, int]:
        return 0, 0

    def read(self, partition: int, start: int, end: int) -> list:
        return []

    def first_timestamp(self, topic: str, partition: int, offset: int) -> float | None:
        return None


def processor(tmp_path, committed: dict[TopicPartition, int] | None = None) -> StreamProcessor:
    """A stream whose store holds the committed state: each partition's records below its committed offset."""
    engine = AlertEngine(rules(), TickerExtractor({"NOVA": ("Novagen",)}), MessageLimits(), "test:v1")
    stream = StreamProcessor(StreamConfig(db_path=tmp_path / "alerts.db"), engine, keyword_scorer)
    stream.store = StateStore(tmp_path / "alerts.db")
    stream.consumer = RecordingConsumer(committed)
    stream.reader, stream.changelog_id = EmptyChangelog(), "test-changelog"
    stream._ensure_changelog = lambda: None
    writer = AlertEngine(rules(), TickerExtractor({"NOVA": ("Novagen",)}), MessageLimits(), "test:v1")
    for tp, offset in (committed or {}).items():
        write_batch(stream.store, writer.process(fetched(tp.partition, *range(offset)), keyword_scorer), 3600.0)
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


def test_a_partition_whose_changelog_lost_its_state_is_rebuilt_from_the_input(tmp_path, caplog):
    """The group committed offset 3 but neither the store nor the changelog holds any state (the changelog
    topic was deleted): the input is re-read from its earliest offset, for the state only, up to offset 3."""
    stream = processor(tmp_path)
    stream.consumer.offsets = {NEWS0: 3}
    stream.on_assigned([NEWS0])
    assert stream.consumer.seeks == {NEWS0: 0}
    assert stream.engine.partitions[("news", 0)].rebuild_until == 3
    assert "rebuilding the state by re-reading the input from offset 0 (the earliest retained is 0" in caplog.text
    rebuilt = stream.engine.process(fetched(0, 0, 1, 2, 3), keyword_scorer)
    assert [s["id"] for _, s in rebuilt.scored] == ["m3"] and rebuilt.rebuilt == 3  # outputs only past offset 3
    assert rebuilt.offsets == {("news", 0): 4} and rebuilt.applied == {("news", 0): 4}
    assert [e.id for _, _, e in rebuilt.events] == ["m0", "m1", "m2", "m3"]  # the state has them all


def test_a_checkpoint_ahead_of_the_committed_offset_is_redone_without_counting_twice(tmp_path):
    """A store ahead of the committed offset (the stream commits SQLite after Kafka, so only a store put back
    from elsewhere can be) has its records read again for their outputs, not counted again."""
    stream = processor(tmp_path, committed={NEWS0: 2})
    stream.engine.partitions[("news", 0)] = stream.store.load_partition("news", 0, stream.engine)
    lost = stream.engine.process(fetched(0, 2, 3, 4), keyword_scorer)  # in the store, not committed
    write_batch(stream.store, lost, stream.engine.rules.longest_window_s)

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

    def close(self, timeout: float | None = None) -> None:
        pass

    def abort_transaction(self) -> None:
        if self.abort_fails:
            raise ProducerFencedError()
        self.aborts += 1


def test_an_aborted_batch_is_redone_from_the_committed_offsets_of_its_assigned_partitions(tmp_path, monkeypatch):
    monkeypatch.setattr("apps.finance_monitor.stream.time.sleep", lambda s: None)
    stream = processor(tmp_path, committed={NEWS0: 4})
    stream.engine.partitions[("news", 0)] = stream.store.load_partition("news", 0, stream.engine)
    stream.producer = RecordingProducer()
    stream.consumer.assigned = {NEWS0}  # news[1] was revoked meanwhile: its next owner redoes it
    result = stream.engine.process(fetched(0, 4, 5) + fetched(1, 0), keyword_scorer)

    stream._abort(KafkaError("the broker refused the offsets"), result)

    assert stream.producer.aborts == 1 and stream.consumer.seeks == {NEWS0: 4}
    assert stream.engine.partitions[("news", 0)].applied == 4  # reloaded from the store: the committed state
    with pytest.raises(KafkaError, match="could not be committed"):
        for _ in range(MAX_ABORTS):
            stream._abort(KafkaError("again"), result)


def test_an_abort_that_fails_starts_a_new_producer_until_it_is_fatal(tmp_path, monkeypatch):
    """A fenced epoch (the broker timed the transaction out) is survived with a new producer under the same id."""
    monkeypatch.setattr("apps.finance_monitor.stream.time.sleep", lambda s: None)
    stream = processor(tmp_path)
    stream.producer = RecordingProducer(abort_fails=True)
    started = []
    stream._new_producer = lambda: started.append(RecordingProducer(abort_fails=True)) or started[-1]
    result = stream.engine.process(fetched(0, 0), keyword_scorer)
    for attempt in range(MAX_ABORTS):
        stream._abort(KafkaError("fenced"), result)
        assert stream.producer is started[attempt]
    with pytest.raises(ProducerFencedError):
        stream._abort(KafkaError("fenced"), result)
