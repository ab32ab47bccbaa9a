"""Fixtures for the stream's integration tests: a tiny real sentiment model in a temporary registry,
unique topic names per test, and helpers to run processors and read topics."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from apps.finance_monitor.settings import DEMO_DIR, StreamConfig

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def sentiment_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry holding a MiniLM fine-tuned for one epoch on the demo sentences, promoted to production."""
    from apps.finance_monitor.demo_model import train_demo_model
    from core.registry import Registry

    root = tmp_path_factory.mktemp("registry")
    train_demo_model(Registry(root), "finance-sentiment", epochs=1, progress=False)
    return root


@pytest.fixture(scope="session")
def scorer(sentiment_registry: Path):
    from apps.finance_monitor.scoring import load_scorer
    from core.registry import Registry

    return load_scorer(Registry(sentiment_registry), "finance-sentiment", batch_size=32)


@pytest.fixture
def stream_config(kafka_bootstrap: str, sentiment_registry: Path, tmp_path: Path) -> StreamConfig:
    """Unique topics, group and database for one test."""
    run = uuid.uuid4().hex[:8]
    return StreamConfig(
        bootstrap_servers=kafka_bootstrap, group_id=f"fm-test-{run}", input_topic=f"fm.{run}.news",
        scored_topic=f"fm.{run}.scored", alerts_topic=f"fm.{run}.alerts", deadletter_topic=f"fm.{run}.dead",
        registry_root=sentiment_registry, rules_path=DEMO_DIR / "rules.yaml", tickers_path=DEMO_DIR / "tickers.yaml",
        db_path=tmp_path / "alerts.db", batch_size=16, max_wait_ms=100, metrics_port=0, partitions=4,
    )


def write_rules(path: Path, rules: list[dict], windows: dict | None = None) -> Path:
    path.write_text(json.dumps({"windows": windows or {"short": "15m", "baseline": "1h"},
                                "allowed_lateness": "1m", "cooldown": "30m", "evidence": 3, "rules": rules}))
    return path


class RunningProcessor:
    """A StreamProcessor in a thread, recording each batch's new alerts."""

    def __init__(self, config: StreamConfig, scorer, idle_exit_s: float | None = None) -> None:
        from apps.finance_monitor.service import build_stream

        self.processor = build_stream(config, scorer=scorer)
        self.results = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(idle_exit_s,), daemon=True)
        self.thread.start()

    def _run(self, idle_exit_s):
        try:
            self.processor.run(idle_exit_s=idle_exit_s, on_batch=self.results.append)
        except BaseException as error:  # surfaced by stop()
            self.error = error

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            consumer = self.processor.consumer
            if consumer is not None and consumer.assignment():
                return
            time.sleep(0.1)
        raise AssertionError("the processor was not assigned any partition in time")

    def stop(self, timeout_s: float = 60.0) -> None:
        self.processor.stop.set()
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "the processor did not stop"
        if self.error:
            raise self.error


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]], partition_of=None) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", retries=10,
                             retry_backoff_ms=200)
    futures = [producer.send(topic, key=key, value=value, partition=partition_of(key) if partition_of else None)
               for key, value in records]
    producer.flush()
    for future in futures:
        future.get(timeout=30)  # raises when the broker did not take the record (flush does not)
    producer.close()


def read_topic(bootstrap: str, topic: str, want: int | None = None, timeout_s: float = 60.0,
               committed: bool = True) -> list[dict]:
    """Every record of ``topic`` (JSON values) from offset 0: until ``want`` arrived, else up to its end offsets.

    ``committed``: read as every consumer of the stream's outputs does (``read_committed``: records of
    aborted or open transactions are skipped); False shows everything written, aborted records included.

    Explicit assignment and end offsets rather than a subscription and a quiet period: on a
    loaded machine a subscription's first fetch can come later than any fixed quiet time.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             isolation_level="read_committed" if committed else "read_uncommitted")
    deadline = time.monotonic() + timeout_s
    values: list[dict] = []
    try:
        partitions = consumer.partitions_for_topic(topic)
        while not partitions and time.monotonic() < deadline:
            time.sleep(0.2)
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise AssertionError(f"topic {topic} does not exist after {timeout_s:.0f} s")
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=300).values():
                values.extend(json.loads(r.value) for r in records)
            if want is not None:
                if len(values) >= want:
                    break
                continue
            ends = consumer.end_offsets(assigned)
            if all(consumer.position(tp) >= ends[tp] for tp in assigned):
                break
    finally:
        consumer.close()
    return values


def wait_committed(bootstrap: str, group: str, total: int, timeout_s: float = 120.0) -> int:
    """Wait until the group's committed offsets add up to ``total``; returns the last sum seen."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    seen = 0
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                offsets = admin.list_group_offsets(group).get(group, {})
                seen = sum(meta.offset for meta in offsets.values() if meta.offset > 0)
            except Exception as error:  # the coordinator may still be loading; a fresh client finds it again
                logging.getLogger(__name__).warning("reading the offsets of %s failed: %r", group, error)
                admin.close()
                admin = KafkaAdminClient(bootstrap_servers=bootstrap)
            if seen >= total:
                return seen
            time.sleep(0.2)
    finally:
        admin.close()
    return seen


T0 = 1_767_600_000.0
NEUTRAL = ["{co} schedules its quarterly earnings call for next Tuesday", "{co} files its annual report",
           "{co} will present at an industry conference next month", "{co} names a new head of investor relations",
           "{co} holds its annual general meeting", "{co} confirms the date of its capital markets day"]
NEGATIVE = ["{co} shares plunge after the company cuts its profit forecast", "{co} faces a fraud investigation",
            "{co} reports a surprise quarterly loss and suspends its dividend",
            "{co} recalls thousands of units over a safety defect", "Analysts downgrade {co} to sell as losses mount",
            "{co} hit with a class action lawsuit from shareholders"]


def news(ticker: str, prefix: str, start: float, count: int, spacing_s: float, negative: bool = False) -> list[dict]:
    templates = NEGATIVE if negative else NEUTRAL
    return [{"id": f"{prefix}-{ticker}-{i}", "ts": start + i * spacing_s, "source": "test",
             "text": templates[i % len(templates)].format(co=f"${ticker}"), "tickers": [ticker]}
            for i in range(count)]


def as_records(messages: list[dict]) -> list[tuple[bytes, bytes]]:
    return [(m["tickers"][0].encode(), json.dumps(m).encode()) for m in messages]


def with_rules(config: StreamConfig, path: Path, rules: list[dict]) -> StreamConfig:
    return replace(config, rules_path=write_rules(path, rules))
