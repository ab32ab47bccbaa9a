"""Exactly-once against the real broker: a batch's outputs and offsets commit in one transaction.

Scenarios: a processor killed with SIGKILL inside a batch's transaction leaves nothing of that
batch visible to a read_committed reader, and its successor's output holds every input id
exactly once; a transaction that fails before its commit is aborted and redone in-process
(the aborted copies stay in the log, invisible); input records repeated by a producer (same
id, same key) are scored and counted once; `alerts --follow` shows committed alerts only;
replay's producer is idempotent.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from kafka import KafkaProducer
from kafka.errors import KafkaError

from apps.finance_monitor.follow import follow_topic
from apps.finance_monitor.replay import make_producer
from apps.finance_monitor.store import StateStore
from apps.finance_monitor.stream import StreamProcessor, ensure_topics

from .conftest import T0, RunningProcessor, as_records, news, produce, read_topic, wait_committed, with_rules
from .test_stream_kafka import NEGATIVE_SHARE, _start, burst_scenario

pytestmark = pytest.mark.slow
HERE = Path(__file__).resolve().parent


def duplicates(values: list[dict]) -> int:
    """duplicates_in_committed_scores: records beyond the first per id."""
    return sum(count - 1 for count in Counter(v["id"] for v in values).values())


def test_a_processor_killed_mid_transaction_leaves_nothing_visible_and_its_successor_redoes_it(stream_config):
    config = replace(stream_config, batch_size=4, max_wait_ms=50)
    messages = sorted(burst_scenario(), key=lambda m: m["ts"])
    produce(config.bootstrap_servers, config.input_topic, as_records(messages))
    values = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}
    crashing = subprocess.run([sys.executable, str(HERE / "crash_mid_batch.py"), json.dumps(values), "3"],
                              env={**os.environ, "TEXTML_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"},
                              capture_output=True, text=True, timeout=300)
    assert crashing.returncode == -9, crashing.stdout[-3000:] + crashing.stderr[-3000:]

    everything = read_topic(config.bootstrap_servers, config.scored_topic, committed=False)
    visible = read_topic(config.bootstrap_servers, config.scored_topic)
    committed = wait_committed(config.bootstrap_servers, config.group_id, 1, timeout_s=10)
    assert len(visible) == committed > 0  # the batches committed before the kill ...
    assert len(everything) > len(visible)  # ... and not the one that was sent but never committed
    store = StateStore(config.db_path, config.group_id)
    # the store commits after Kafka: the batch that died in its transaction is not in it either
    assert store.db.execute("SELECT SUM(next_offset) FROM checkpoints").fetchone()[0] == committed

    successor = _start(config, {**os.environ, "TEXTML_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    try:
        assert wait_committed(config.bootstrap_servers, config.group_id, len(messages)) == len(messages)
    finally:
        successor.terminate()
        output = successor.communicate(timeout=60)[0].decode(errors="replace")
    assert successor.returncode == 0, output[-3000:]
    assert "restored from the changelog" in output
    scored = read_topic(config.bootstrap_servers, config.scored_topic)
    assert duplicates(scored) == 0 and {s["id"] for s in scored} == {m["id"] for m in messages}
    alerts = [a["alert_id"] for a in read_topic(config.bootstrap_servers, config.alerts_topic)]
    stored = [a["alert_id"] for _, a in store.alerts_after(0)]
    assert len(alerts) == len(set(alerts)) and sorted(alerts) == sorted(stored)
    events = store.db.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM window_events").fetchone()
    assert events[0] == events[1] == len(messages)  # nothing counted twice
    store.close()


def test_a_failed_commit_is_aborted_and_redone_with_aborted_copies_invisible(stream_config, scorer, tmp_path,
                                                                              monkeypatch):
    config = with_rules(replace(stream_config, batch_size=4, max_wait_ms=50), tmp_path / "rules.json",
                        [NEGATIVE_SHARE])
    messages = sorted(burst_scenario(), key=lambda m: m["ts"])
    attempts: list[int] = []
    original = StreamProcessor._commit_transaction

    def flaky_commit(self):
        attempts.append(1)
        if len(attempts) % 3 == 2:  # batches 2, 4, 6 ... fail once: sent, acknowledged, then aborted
            raise KafkaError("injected failure between send and commit")
        original(self)

    monkeypatch.setattr(StreamProcessor, "_commit_transaction", flaky_commit)
    running = RunningProcessor(config, scorer)
    try:
        running.wait_ready()
        produce(config.bootstrap_servers, config.input_topic, as_records(messages))
        assert wait_committed(config.bootstrap_servers, config.group_id, len(messages)) == len(messages)
    finally:
        running.stop()
    assert running.processor.metrics.aborted._value.get() >= 3
    scored = read_topic(config.bootstrap_servers, config.scored_topic)
    assert duplicates(scored) == 0 and {s["id"] for s in scored} == {m["id"] for m in messages}
    assert duplicates(read_topic(config.bootstrap_servers, config.scored_topic, committed=False)) > 0
    alerts = read_topic(config.bootstrap_servers, config.alerts_topic)
    assert [(a["ticker"], a["rule"]) for a in alerts] == [("NOVA", "negative_share")]


def test_repeated_input_records_are_scored_and_counted_once(stream_config, scorer):
    config = stream_config
    messages = news("NOVA", "calm", T0, 20, 60) + news("ORBT", "calm", T0, 10, 60)
    records = as_records(messages)
    retried = records[:12] + records[5:12] + records[12:] + records[20:25]  # a retried replay's copies
    running = RunningProcessor(config, scorer)
    try:
        running.wait_ready()
        produce(config.bootstrap_servers, config.input_topic, retried)
        assert wait_committed(config.bootstrap_servers, config.group_id, len(retried)) == len(retried)
    finally:
        running.stop()
    scored = read_topic(config.bootstrap_servers, config.scored_topic)
    assert duplicates(scored) == 0 and len(scored) == len(messages)
    assert sum(r.duplicates for r in running.results) == len(retried) - len(messages)
    store = StateStore(config.db_path, config.group_id)
    counts = dict(store.db.execute("SELECT ticker, COUNT(*) FROM window_events GROUP BY ticker").fetchall())
    store.close()
    assert counts == {"NOVA": 20, "ORBT": 10}


def test_follow_shows_committed_alerts_only(kafka_bootstrap, stream_config):
    topic = stream_config.alerts_topic
    ensure_topics(kafka_bootstrap, [topic], 2)
    alert = {"alert_id": "", "ticker": "NOVA", "rule": "negative_share", "window": "short", "model_version": "t:v1",
             "figures": {"count": 6}, "evidence": [], "ts": "2026-01-05T08:00:00Z"}
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"follow-test-{topic}")
    producer.init_transactions()
    for alert_id, commit in (("aborted", False), ("committed", True)):
        producer.begin_transaction()
        producer.send(topic, key=alert_id.encode(), value=json.dumps({**alert, "alert_id": alert_id}).encode())
        producer.flush()
        producer.commit_transaction() if commit else producer.abort_transaction()
    producer.close()
    out, stop = io.StringIO(), threading.Event()
    thread = threading.Thread(target=follow_topic, args=(kafka_bootstrap, topic, True), daemon=True,
                              kwargs={"out": out, "stop": stop})
    thread.start()
    deadline = time.monotonic() + 30
    while "committed" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    stop.set()
    thread.join(10)
    assert [json.loads(line)["alert_id"] for line in out.getvalue().splitlines()] == ["committed"]


def test_replay_producer_is_idempotent(kafka_bootstrap):
    producer = make_producer(kafka_bootstrap)
    try:
        assert producer.config["enable_idempotence"] is True and producer.config["acks"] == -1
    finally:
        producer.close()
