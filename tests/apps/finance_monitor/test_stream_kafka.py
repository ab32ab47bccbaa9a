"""The stream against the real broker with a real (tiny) fine-tuned sentiment model.

Scenarios: a negative burst about one ticker raises exactly one alert with evidence while
neutral traffic raises none; malformed records land in the dead-letter topic with a reason;
a processor killed with SIGKILL and restarted loses no message and duplicates no alert (and
SIGTERM stops it cleanly); a second processor, with its own store, joining the group takes over
partitions together with their window state (from the changelog).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from apps.finance_monitor.store import StateStore

from .conftest import (
    T0,
    RunningProcessor,
    as_records,
    news,
    produce,
    read_topic,
    wait_committed,
    with_rules,
)

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parents[3]
NEGATIVE_SHARE = {"name": "negative_share", "kind": "negative_share", "window": "short", "threshold": 0.6,
                  "min_count": 6}
SENTIMENT_DROP = {"name": "sentiment_drop", "kind": "zscore_drop", "window": "short", "baseline": "baseline",
                  "z": 3.0, "min_count": 6, "min_baseline": 10}


def burst_scenario() -> list[dict]:
    """NOVA: sparse neutral news for 30 min, 10 negative headlines in 3 min, a quiet tail; ORBT: neutral only."""
    return (news("NOVA", "calm", T0, 10, 180) + news("NOVA", "bad", T0 + 1800, 10, 20, negative=True)
            + news("NOVA", "tail", T0 + 2100, 3, 300) + news("ORBT", "calm", T0, 40, 60))


def test_negative_burst_raises_exactly_one_alert_with_evidence(stream_config, scorer, tmp_path):
    config = with_rules(stream_config, tmp_path / "rules.json", [NEGATIVE_SHARE])
    messages = burst_scenario()
    running = RunningProcessor(config, scorer)
    try:
        running.wait_ready()
        produce(config.bootstrap_servers, config.input_topic, as_records(messages))
        assert wait_committed(config.bootstrap_servers, config.group_id, len(messages)) == len(messages)
    finally:
        running.stop()
    alerts = read_topic(config.bootstrap_servers, config.alerts_topic)
    assert len(alerts) == 1, alerts
    alert = alerts[0]
    assert (alert["ticker"], alert["rule"], alert["window"]) == ("NOVA", "negative_share", "short")
    assert alert["model_version"] == "finance-sentiment:v1"
    assert alert["figures"]["negative_share"] > 0.6 and alert["figures"]["count"] >= 6
    assert len(alert["evidence"]) == 3
    assert all(e["id"].startswith("bad-NOVA-") and e["text"] for e in alert["evidence"])
    assert {"alert_id", "ts"} <= set(alert)
    scored = read_topic(config.bootstrap_servers, config.scored_topic, want=len(messages))
    assert sorted(s["id"] for s in scored) == sorted(m["id"] for m in messages)
    assert {s["label"] for s in scored if s["id"].startswith("bad-")} == {"negative"}
    store = StateStore(config.db_path, config.group_id)
    assert [a["alert_id"] for _, a in store.alerts_after(0)] == [alert["alert_id"]]
    store.close()


def test_malformed_records_go_to_the_dead_letter_topic(stream_config, scorer):
    config = replace(stream_config, max_message_bytes=1000)
    records = [(b"NOVA", b"this is not json"), (b"NOVA", b'{"id": "no-text"}'),
               (b"NOVA", json.dumps({"id": "big", "text": "Novagen " * 200}).encode()),
               (b"NOVA", json.dumps({"id": "fine", "ts": T0, "text": "Novagen files its annual report"}).encode())]
    running = RunningProcessor(config, scorer)
    try:
        running.wait_ready()
        produce(config.bootstrap_servers, config.input_topic, records)
        assert wait_committed(config.bootstrap_servers, config.group_id, len(records)) == len(records)
    finally:
        running.stop()
    dead = read_topic(config.bootstrap_servers, config.deadletter_topic, want=3)
    assert sorted(d["reason"] for d in dead) == ["missing_text", "not_json", "oversize"]
    assert all(d["detail"] and d["input"]["topic"] == config.input_topic for d in dead)
    scored = read_topic(config.bootstrap_servers, config.scored_topic, want=1)
    assert [s["id"] for s in scored] == ["fine"] and scored[0]["tickers"] == ["NOVA"]


def _start(config, env) -> subprocess.Popen:
    command = [sys.executable, "-m", "apps.finance_monitor", "run", "--bootstrap-servers", config.bootstrap_servers,
               "--group", config.group_id, "--input-topic", config.input_topic, "--scored-topic", config.scored_topic,
               "--alerts-topic", config.alerts_topic, "--deadletter-topic", config.deadletter_topic,
               "--registry", str(config.registry_root), "--db", str(config.db_path), "--batch-size", "4",
               "--max-wait-ms", "50", "--metrics-port", "0"]
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_killed_processor_restarts_without_loss_or_duplicate_alerts(stream_config, scorer):
    config = stream_config
    messages = burst_scenario() + news("QNTM", "calm", T0, 30, 60) + news("QNTM", "bad", T0 + 1800, 10, 20, True) \
        + news("QNTM", "tail", T0 + 2100, 3, 300)
    messages.sort(key=lambda m: m["ts"])
    # The first half is the calm history; the bursts come after the kill, so their alerts need the
    # window state the killed processor left in the checkpoint.
    half = len(messages) // 2
    produce(config.bootstrap_servers, config.input_topic, as_records(messages[:half]))
    env = {**os.environ, "TEXTML_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}

    first = _start(config, env)
    try:
        committed = wait_committed(config.bootstrap_servers, config.group_id, 30, timeout_s=120)
        assert committed >= 30, f"the first processor committed only {committed} messages"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    produce(config.bootstrap_servers, config.input_topic, as_records(messages[half:]))
    second = _start(config, env)
    try:
        assert wait_committed(config.bootstrap_servers, config.group_id, len(messages)) == len(messages)
    finally:
        second.send_signal(signal.SIGTERM)
        output = second.communicate(timeout=60)[0].decode(errors="replace")
    assert second.returncode == 0, output[-3000:]
    assert "stream stopped" in output

    scored = read_topic(config.bootstrap_servers, config.scored_topic)
    assert sorted(s["id"] for s in scored) == sorted(m["id"] for m in messages)  # exactly once
    store = StateStore(config.db_path, config.group_id)
    stored = [a["alert_id"] for _, a in store.alerts_after(0)]
    store.close()
    published = [a["alert_id"] for a in read_topic(config.bootstrap_servers, config.alerts_topic)]
    assert len(published) == len(set(published)) and set(published) == set(stored)

    # The same input processed in one go, without a crash, raises exactly the same alerts.
    reference = replace(config, group_id=config.group_id + "-ref", db_path=config.db_path.with_name("ref.db"),
                        scored_topic=config.scored_topic + "-ref", alerts_topic=config.alerts_topic + "-ref")
    running = RunningProcessor(reference, scorer)
    try:
        assert wait_committed(config.bootstrap_servers, reference.group_id, len(messages)) == len(messages)
    finally:
        running.stop()
    expected = {a.alert_id for result in running.results for a in result.alerts}
    assert {"NOVA", "QNTM"} <= {a.ticker for result in running.results for a in result.alerts}
    assert sorted(stored) == sorted(expected)


def test_second_consumer_takes_over_partitions_with_their_window_state(stream_config, scorer, tmp_path):
    config = with_rules(stream_config, tmp_path / "rules.json", [SENTIMENT_DROP])
    tickers = ["NOVA", "ORBT", "QNTM", "HLXR"]
    partition = {t.encode(): i for i, t in enumerate(tickers)}.get
    history = [m for t in tickers for m in news(t, "calm", T0, 30, 60)]
    first = RunningProcessor(config, scorer)
    second = None
    try:
        first.wait_ready()
        produce(config.bootstrap_servers, config.input_topic, as_records(history), partition)
        assert wait_committed(config.bootstrap_servers, config.group_id, len(history)) == len(history)
        from apps.finance_monitor.scoring import load_scorer
        from core.registry import Registry

        second = RunningProcessor(replace(config, db_path=tmp_path / "second.db"),
                                  load_scorer(Registry(config.registry_root), "finance-sentiment"))
        second.wait_ready()
        deadline = time.monotonic() + 60
        while len(first.processor.consumer.assignment()) != 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        moved = {tp.partition for tp in second.processor.consumer.assignment()}
        assert len(moved) == 2
        burst = [m for t in tickers for m in news(t, "bad", T0 + 1800, 8, 20, negative=True)
                 + news(t, "tail", T0 + 2000, 3, 120)]
        produce(config.bootstrap_servers, config.input_topic, as_records(burst), partition)
        total = len(history) + len(burst)
        assert wait_committed(config.bootstrap_servers, config.group_id, total) == total
    finally:
        first.stop()
        if second is not None:
            second.stop()
    by_second = {a.ticker for result in second.results for a in result.alerts}
    by_first = {a.ticker for result in first.results for a in result.alerts}
    # The drop is only significant against the 30 minutes of history the first processor saw.
    assert by_second == {tickers[p] for p in moved}
    assert by_first == set(tickers) - by_second
