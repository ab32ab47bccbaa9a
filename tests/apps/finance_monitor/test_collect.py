"""How the stream cuts batches: full batches from a backlog, early batches when input pauses.

The consumer is a scripted stand-in returning prepared polls; the real-broker behaviour is
covered by test_stream_kafka.py and measured by `make bench-stream`.
"""

from __future__ import annotations

from kafka import TopicPartition

from apps.finance_monitor.engine import AlertEngine
from apps.finance_monitor.messages import MessageLimits
from apps.finance_monitor.settings import StreamConfig
from apps.finance_monitor.stream import REBALANCE_POLL_MS, StreamProcessor
from apps.finance_monitor.tickers import TickerExtractor

from .helpers import keyword_scorer, record, rules

NEWS0 = TopicPartition("news", 0)


class ScriptedConsumer:
    def __init__(self, polls: list[int]) -> None:
        self.polls = list(polls)  # records returned by each successive poll
        self.timeouts: list[int] = []
        self.offset = 0

    def poll(self, timeout_ms: int, max_records: int) -> dict:
        self.timeouts.append(timeout_ms)
        count = min(self.polls.pop(0) if self.polls else 0, max_records)
        batch = [record(self.offset + i, 1_767_600_000.0, "Novagen files its annual report") for i in range(count)]
        self.offset += count
        return {NEWS0: batch} if batch else {}


def stream(consumer: ScriptedConsumer, max_wait_ms: int = 250, **settings) -> StreamProcessor:
    engine = AlertEngine(rules(), TickerExtractor({"NOVA": ("Novagen",)}), MessageLimits(), "test:v1")
    config = StreamConfig(batch_size=8, max_wait_ms=max_wait_ms, linger_ms=20, metrics_port=0, **settings)
    processor = StreamProcessor(config, engine, keyword_scorer)
    processor.consumer = consumer
    return processor


def test_a_backlog_fills_whole_batches():
    consumer = ScriptedConsumer([5, 5, 5])
    assert len(stream(consumer)._collect()) == 8
    assert consumer.offset == 8


def test_a_pause_in_the_input_ends_the_batch_after_the_linger_time():
    consumer = ScriptedConsumer([3, 0, 4])
    batch = stream(consumer)._collect()
    assert [r.offset for r in batch] == [0, 1, 2]
    assert consumer.timeouts[0] > 200 and consumer.timeouts[1] <= 20  # waits for the first records only


def test_no_input_returns_an_empty_batch_after_max_wait():
    consumer = ScriptedConsumer([])
    assert stream(consumer)._collect() == []
    assert sum(consumer.timeouts) >= 240


class StrandedCoordinator:
    """kafka-python 3.0.12's coordinator after a poll timed out during the leader's rejoin: JoinGroup and
    SyncGroup completed on its IO thread, but ``need_rejoin()`` turned false, so no poll applies the result."""

    def __init__(self) -> None:
        self.rejoining = True
        self.rejoin_needed = False

    def need_rejoin(self) -> bool:
        return self.rejoin_needed

    def request_rejoin(self) -> None:
        self.rejoin_needed = True


class RejoiningConsumer(ScriptedConsumer):
    """A poll finishes the join only when the coordinator was asked for it (as kafka-python's does)."""

    def __init__(self, polls: list[int]) -> None:
        super().__init__(polls)
        self._coordinator = StrandedCoordinator()

    def poll(self, timeout_ms: int, max_records: int) -> dict:
        if self._coordinator.rejoin_needed:
            self._coordinator.rejoining = self._coordinator.rejoin_needed = False
        return super().poll(timeout_ms, max_records)


def test_a_rebalance_a_short_poll_stranded_is_finished_with_a_long_poll():
    consumer = RejoiningConsumer([0, 2])
    batch = stream(consumer, max_wait_ms=50)._collect()
    assert consumer.timeouts[0] >= REBALANCE_POLL_MS  # the join gets time to complete inside the poll
    assert not consumer._coordinator.rejoining and consumer.timeouts[1] <= 50  # then the batch's own timing
    assert [r.offset for r in batch] == [0, 1]
