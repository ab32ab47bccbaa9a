"""Rebalance bookkeeping of the stream: records fetched but not yet processed when their
partition is revoked must be fetched again when the partition comes back, and offsets whose
commit was refused must reach Kafka later.

kafka-python 3 keeps a partition's fetch position when the same consumer is assigned it
again, so the processor has to seek; these tests pin where it seeks. The consumer here is a
small recording stand-in (the real-broker scenarios live in test_stream_kafka.py).
"""

from __future__ import annotations

from kafka import TopicPartition
from kafka.errors import CommitFailedError

from apps.finance_monitor.engine import AlertEngine, Record
from apps.finance_monitor.messages import MessageLimits
from apps.finance_monitor.settings import StreamConfig
from apps.finance_monitor.store import AlertStore
from apps.finance_monitor.stream import StreamProcessor, _Rebalance
from apps.finance_monitor.tickers import TickerExtractor

from .helpers import keyword_scorer, record, rules


class RecordingConsumer:
    def __init__(self) -> None:
        self.seeks: dict[TopicPartition, int] = {}

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks[partition] = offset


def processor(tmp_path) -> StreamProcessor:
    engine = AlertEngine(rules(), TickerExtractor({"NOVA": ("Novagen",)}), MessageLimits(), "test:v1")
    stream = StreamProcessor(StreamConfig(db_path=tmp_path / "alerts.db"), engine, keyword_scorer)
    stream.store = AlertStore(tmp_path / "alerts.db")
    stream.consumer = RecordingConsumer()
    return stream


def fetched(partition: int, *offsets: int) -> list[Record]:
    return [record(offset, 1_767_600_000.0 + offset, "Novagen files its annual report", partition=partition)
            for offset in offsets]


def test_dropped_records_are_fetched_again_when_the_partition_comes_back(tmp_path):
    stream = processor(tmp_path)
    stream._pending = fetched(0, 0, 1, 2) + fetched(1, 5, 6)
    news0, news1 = TopicPartition("news", 0), TopicPartition("news", 1)

    stream.on_revoked([news0, news1])
    assert stream._pending == []
    stream.on_assigned([news0, news1])

    assert stream.consumer.seeks == {news0: 0, news1: 5}


def test_the_checkpoint_wins_over_the_dropped_records(tmp_path):
    """Another processor of the group may have moved the partition on while it was away."""
    stream = processor(tmp_path)
    batch = fetched(0, 0, 1, 2, 3)
    stream.store.write_batch(stream.engine.process(batch, keyword_scorer), stream.engine.rules.longest_window_s)
    stream._pending = fetched(0, 1, 2)
    news0 = TopicPartition("news", 0)

    stream.on_revoked([news0])
    stream.on_assigned([news0])

    assert stream.consumer.seeks == {news0: 4}


def test_partitions_kept_without_dropped_records_or_checkpoint_are_left_alone(tmp_path):
    stream = processor(tmp_path)
    stream._pending = fetched(1, 7)
    news0, news1 = TopicPartition("news", 0), TopicPartition("news", 1)

    stream.on_revoked([news0, news1])
    stream.on_assigned([news0])

    assert stream.consumer.seeks == {}
    stream.on_revoked([news0])
    stream.on_assigned([news1])  # the rewind of a revocation applies only to the assignment that follows it
    assert stream.consumer.seeks == {}


def test_the_listener_only_queues_and_the_loop_applies_in_order(tmp_path):
    """kafka-python 3 calls the listener on its IO thread: state changes must wait for the loop."""
    stream = processor(tmp_path)
    listener = _Rebalance(stream._rebalances)
    news0 = TopicPartition("news", 0)
    stream._pending = fetched(0, 3, 4)

    listener.on_partitions_revoked([news0])
    listener.on_partitions_assigned([news0])
    assert len(stream._pending) == 2 and stream.consumer.seeks == {}  # nothing touched off the loop's thread

    assert stream._apply_rebalances() is True
    assert stream._pending == [] and stream.consumer.seeks == {news0: 3}
    assert stream._apply_rebalances() is False


def test_records_fetched_before_an_assignment_is_applied_are_read_again_from_the_checkpoint(tmp_path):
    """A poll can return records from kafka-python's own position before the loop applies the
    assignment; they are dropped and the partition re-read from the checkpoint."""
    stream = processor(tmp_path)
    stream.store.write_batch(stream.engine.process(fetched(2, 0, 1, 2, 3, 4, 5), keyword_scorer),
                             stream.engine.rules.longest_window_s)
    news2 = TopicPartition("news", 2)
    stream._pending = fetched(2, 4, 5, 6)  # e.g. from a committed offset behind the checkpoint

    stream.on_assigned([news2])

    assert stream._pending == [] and stream.consumer.seeks == {news2: 6}


class RefusingConsumer(RecordingConsumer):
    """Refuses the first ``refusals`` commits the way kafka-python does after a rebalance or an eviction."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals
        self.commits: list[dict[tuple[str, int], int]] = []

    def commit(self, offsets) -> None:
        if self.refusals:
            self.refusals -= 1
            raise CommitFailedError("the group has already rebalanced")
        self.commits.append({(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()})


def test_a_refused_commit_is_kept_and_retried_with_the_next_batch(tmp_path):
    stream = processor(tmp_path)
    stream.consumer = RefusingConsumer(refusals=1)
    stream._uncommitted.update({("news", 0): 3})

    assert stream._commit() is False and stream._uncommitted == {("news", 0): 3}
    stream._uncommitted.update({("news", 0): 5, ("news", 1): 2})  # the next batch
    assert stream._commit() is True
    assert stream.consumer.commits == [{("news", 0): 5, ("news", 1): 2}] and stream._uncommitted == {}


def test_the_next_owner_commits_the_checkpoint_it_resumes_from(tmp_path):
    """The checkpoint may be ahead of the group's offset (a refused commit, or a crash before the commit);
    without new input nothing else would move the group's offset on."""
    stream = processor(tmp_path)
    stream.consumer = RefusingConsumer(refusals=1)
    stream.store.write_batch(stream.engine.process(fetched(0, 0, 1, 2, 3), keyword_scorer),
                             stream.engine.rules.longest_window_s)
    stream._uncommitted.update({("news", 0): 4})
    news0 = TopicPartition("news", 0)
    assert stream._commit() is False

    stream.on_revoked([news0])
    assert stream._uncommitted == {}  # a partition that moved is its next owner's to commit
    stream.on_assigned([news0])
    assert stream.consumer.seeks == {news0: 4} and stream._uncommitted == {("news", 0): 4}
    assert stream._commit() is True and stream.consumer.commits == [{("news", 0): 4}]
