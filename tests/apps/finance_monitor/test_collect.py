"""How the stream cuts batches: full batches from a backlog, early batches when input pauses.

The consumer is a scripted stand-in returning prepared polls; the real-broker behaviour is
covered by test_stream_kafka.py and measured by `make bench-stream`.
"""

from __future__ import annotations

from kafka import TopicPartition

from apps.finance_monitor.engine import AlertEngine
from apps.finance_monitor.messages import MessageLimits
from apps.finance_monitor.settings import StreamConfig
from apps.finance_monitor.stream import StreamProcessor
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


def stream(consumer: ScriptedConsumer, **settings) -> StreamProcessor:
    engine = AlertEngine(rules(), TickerExtractor({"NOVA": ("Novagen",)}), MessageLimits(), "test:v1")
    config = StreamConfig(batch_size=8, max_wait_ms=250, linger_ms=20, metrics_port=0, **settings)
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
