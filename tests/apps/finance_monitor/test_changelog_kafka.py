"""State in Kafka against the real broker: processors share nothing but Kafka.

Scenarios: two processors in two working directories (each its own TEXTML_VAR_DIR, so its own
store) in one group on four partitions; one is killed with SIGKILL while the input's second half
arrives; the survivor restores the dead one's partitions from the changelog topic (not by
re-reading the input) and the committed alerts equal an undisturbed single processor's. And a
changelog topic deleted between two runs is recreated (compacted) and the state it held rebuilt
from the input, with a warning that says from where; the alerts again equal the undisturbed run's.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from apps.finance_monitor.stream import ensure_topics

from .conftest import T0, RunningProcessor, as_records, news, produce, read_topic, wait_committed, with_rules
from .test_stream_kafka import NEGATIVE_SHARE, SENTIMENT_DROP

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parents[3]
TICKERS = ["NOVA", "ORBT", "QNTM", "HLXR"]
PARTITION = {t.encode(): i for i, t in enumerate(TICKERS)}.get  # one ticker per partition
RESTORED = re.compile(r"\[(\d+)\]: restored from the changelog \((\d+) record\(s\)")


def history() -> list[dict]:
    return [m for t in TICKERS for m in news(t, "calm", T0, 30, 60)]


def bursts() -> list[dict]:
    """The drop is significant only against the 30 minutes of history: the state must have come along."""
    return [m for t in TICKERS for m in news(t, "bad", T0 + 1800, 8, 20, negative=True)
            + news(t, "tail", T0 + 2000, 3, 120)]


def reference_alerts(config, scorer, total: int) -> list[str]:
    """The alert ids one undisturbed processor raises on the same input (its own group, store and outputs)."""
    reference = replace(config, group_id=config.group_id + "-ref", db_path=config.db_path.with_name("ref.db"),
                        scored_topic=config.scored_topic + "-ref", alerts_topic=config.alerts_topic + "-ref")
    running = RunningProcessor(reference, scorer)
    try:
        assert wait_committed(config.bootstrap_servers, reference.group_id, total) == total
    finally:
        running.stop()
    alerts = sorted(a.alert_id for result in running.results for a in result.alerts)
    assert len(alerts) >= 2, "the scenario should raise alerts"
    return alerts


class Workdir:
    """A processor started as `python -m apps.finance_monitor run` in its own directory, logging to run.log there."""

    def __init__(self, root: Path, config) -> None:
        self.root = root
        self.var = root / "var"
        self.log_path = root / "run.log"
        root.mkdir()
        env = {**os.environ, "TEXTML_VAR_DIR": str(self.var), "PYTHONPATH": str(REPO_ROOT),
               "TEXTML_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        env.pop("FINANCE_DB", None)
        command = [sys.executable, "-m", "apps.finance_monitor", "run", "--bootstrap-servers",
                   config.bootstrap_servers, "--group", config.group_id, "--input-topic", config.input_topic,
                   "--scored-topic", config.scored_topic, "--alerts-topic", config.alerts_topic,
                   "--deadletter-topic", config.deadletter_topic, "--registry", str(config.registry_root),
                   "--rules", str(config.rules_path), "--batch-size", "4", "--max-wait-ms", "50",
                   "--metrics-port", "0"]
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def assigned(self) -> set[int]:
        """The partitions of its last assignment, from its log."""
        lines = re.findall(r"partitions assigned: \[(.*)\]", self.log())
        return {int(p) for p in re.findall(r", (\d+)\)", lines[-1])} if lines else set()

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.log()


def test_a_killed_processors_partitions_move_with_their_state_from_the_changelog(stream_config, scorer, tmp_path):
    config = with_rules(stream_config, tmp_path / "rules.json", [SENTIMENT_DROP, NEGATIVE_SHARE])
    ensure_topics(config.bootstrap_servers, [config.input_topic], len(TICKERS))
    first, second = Workdir(tmp_path / "host-a", config), Workdir(tmp_path / "host-b", config)
    try:
        deadline = time.monotonic() + 240
        while not (len(first.assigned()) == len(second.assigned()) == 2) and time.monotonic() < deadline:
            assert first.process.poll() is None and second.process.poll() is None, first.log() + second.log()
            time.sleep(0.5)
        assert len(first.assigned()) == len(second.assigned()) == 2, first.log()[-2000:] + second.log()[-2000:]
        before = history()
        produce(config.bootstrap_servers, config.input_topic, as_records(before), PARTITION)
        assert wait_committed(config.bootstrap_servers, config.group_id, len(before)) == len(before)

        later = bursts()
        produce(config.bootstrap_servers, config.input_topic, as_records(later), PARTITION)
        wait_committed(config.bootstrap_servers, config.group_id, len(before) + 4, timeout_s=60)
        moved = second.assigned()
        second.process.send_signal(signal.SIGKILL)  # mid-run: the second half is being processed
        second.process.wait(30)
        seen_before_kill = len(first.log())
        total = len(before) + len(later)
        assert wait_committed(config.bootstrap_servers, config.group_id, total, timeout_s=180) == total
    finally:
        survivor_log = first.stop()
        second.stop()
    assert first.process.returncode == 0, survivor_log[-3000:]
    assert first.assigned() == set(range(4))

    # the survivor restored the moved partitions from the changelog, each from records written there
    takeover = survivor_log[seen_before_kill:]
    restored = {int(p): int(n) for p, n in RESTORED.findall(takeover)}
    assert moved <= restored.keys() and all(restored[p] > 0 for p in moved), takeover[-3000:]
    assert "re-reading the input" not in survivor_log
    # nothing shared: each working directory has its own store, and the stores hold their own partitions
    assert (first.var / "finance_monitor" / "alerts.db").exists() and (second.var / "finance_monitor"
                                                                       / "alerts.db").exists()

    scored = read_topic(config.bootstrap_servers, config.scored_topic)
    assert sorted(s["id"] for s in scored) == sorted(m["id"] for m in before + later)  # each exactly once
    committed_alerts = [a["alert_id"] for a in read_topic(config.bootstrap_servers, config.alerts_topic)]
    assert len(committed_alerts) == len(set(committed_alerts))
    assert sorted(committed_alerts) == reference_alerts(config, scorer, total)
    assert {a["ticker"] for a in read_topic(config.bootstrap_servers, config.alerts_topic)} == set(TICKERS)


def test_a_deleted_changelog_is_recreated_and_its_state_rebuilt_from_the_input(stream_config, scorer, tmp_path,
                                                                                caplog):
    config = with_rules(stream_config, tmp_path / "rules.json", [SENTIMENT_DROP, NEGATIVE_SHARE])
    before, later = history(), bursts()
    ensure_topics(config.bootstrap_servers, [config.input_topic], len(TICKERS))
    produce(config.bootstrap_servers, config.input_topic, as_records(before), PARTITION)
    running = RunningProcessor(config, scorer)
    try:
        assert wait_committed(config.bootstrap_servers, config.group_id, len(before)) == len(before)
    finally:
        running.stop()

    admin = KafkaAdminClient(bootstrap_servers=config.bootstrap_servers)
    try:
        admin.delete_topics([config.changelog_topic])
        deadline = time.monotonic() + 60
        while config.changelog_topic in admin.list_topics() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert config.changelog_topic not in admin.list_topics()

        caplog.set_level(logging.INFO, logger="apps.finance_monitor")
        running = RunningProcessor(config, scorer)  # the same store: its rows belong to the deleted changelog
        try:
            produce(config.bootstrap_servers, config.input_topic, as_records(later), PARTITION)
            total = len(before) + len(later)
            assert wait_committed(config.bootstrap_servers, config.group_id, total) == total
        finally:
            running.stop()
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, config.changelog_topic,
                                                           ["cleanup.policy"])])
        assert described["topic"][config.changelog_topic]["cleanup.policy"]["value"] == "compact"
    finally:
        admin.close()
    assert f"the changelog topic {config.changelog_topic} was missing: created it" in caplog.text
    assert "discarding it" in caplog.text  # the local rows of the deleted changelog
    rebuilt = re.findall(r"rebuilding the state by re-reading the input from offset (\d+) \(the earliest retained "
                         r"is (\d+), written ([^)]*)\) to (\d+)", caplog.text)
    assert len(rebuilt) >= 4 and all(start == "0" for start, *_ in rebuilt), caplog.text[-3000:]
    assert sum(r.rebuilt for r in running.results) == len(before)  # state only ...
    scored = read_topic(config.bootstrap_servers, config.scored_topic)
    assert sorted(s["id"] for s in scored) == sorted(m["id"] for m in before + later)  # ... so no output twice
    committed_alerts = sorted(a["alert_id"] for a in read_topic(config.bootstrap_servers, config.alerts_topic))
    assert committed_alerts == reference_alerts(config, scorer, total)


@pytest.mark.xfail(strict=False, reason="when the deletion races a batch whose records are in flight, kafka-python's "
                   "flush times out and the new producer's init_transactions waits without end (see README, Known "
                   "issues); passes when the producer sees the topic gone first")
def test_a_changelog_deleted_while_the_processor_runs_is_recreated_and_its_state_rebuilt(stream_config, scorer,
                                                                                          tmp_path, caplog):
    """The next batch's changelog records fail, the batch is aborted; restoring its partitions finds the topic
    gone, recreates it and rebuilds the state from the input; the batch is then done once."""
    config = with_rules(stream_config, tmp_path / "rules.json", [SENTIMENT_DROP, NEGATIVE_SHARE])
    before, later = history(), bursts()
    total = len(before) + len(later)
    ensure_topics(config.bootstrap_servers, [config.input_topic], len(TICKERS))
    caplog.set_level(logging.INFO, logger="apps.finance_monitor")
    running = RunningProcessor(config, scorer)
    admin = KafkaAdminClient(bootstrap_servers=config.bootstrap_servers)
    try:
        running.wait_ready()
        produce(config.bootstrap_servers, config.input_topic, as_records(before), PARTITION)
        assert wait_committed(config.bootstrap_servers, config.group_id, len(before)) == len(before)
        admin.delete_topics([config.changelog_topic])
        deadline = time.monotonic() + 60
        while config.changelog_topic in admin.list_topics() and time.monotonic() < deadline:
            time.sleep(0.2)
        produce(config.bootstrap_servers, config.input_topic, as_records(later), PARTITION)
        assert wait_committed(config.bootstrap_servers, config.group_id, total, timeout_s=150) == total
    finally:
        admin.close()
        running.stop()
    assert f"the changelog topic {config.changelog_topic} was missing: created it" in caplog.text
    assert "rebuilding the state by re-reading the input from offset 0" in caplog.text
    scored = read_topic(config.bootstrap_servers, config.scored_topic)
    assert sorted(s["id"] for s in scored) == sorted(m["id"] for m in before + later)
    committed_alerts = sorted(a["alert_id"] for a in read_topic(config.bootstrap_servers, config.alerts_topic))
    assert committed_alerts == reference_alerts(config, scorer, total)
