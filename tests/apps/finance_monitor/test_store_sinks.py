"""SQLite checkpoints and alert history, the webhook sink against a real local HTTP server,
replay's fan-out, settings from the environment and the CLI's help."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from apps.finance_monitor.engine import AlertEngine
from apps.finance_monitor.follow import format_alert, show_alerts
from apps.finance_monitor.messages import MessageLimits
from apps.finance_monitor.replay import ReplayOptions, fan_out, messages_from_file
from apps.finance_monitor.settings import config_from_env
from apps.finance_monitor.store import StaleStateError, StateStore
from apps.finance_monitor.tickers import TickerExtractor
from apps.finance_monitor.webhook import WebhookSink, slack_payload

from .helpers import keyword_scorer, rules, write_batch
from .test_rules_windows import neutral_then_negative

REPO_ROOT = Path(__file__).resolve().parents[3]


def engine() -> AlertEngine:
    return AlertEngine(rules(), TickerExtractor({"NOVA": ("Novagen",)}), MessageLimits(), "test:v1")


def test_state_rebuilt_from_the_checkpoint_raises_the_same_alerts(tmp_path):
    records = neutral_then_negative()
    expected = [a.alert_id for a in engine().process(records, keyword_scorer).alerts]
    assert expected

    first, store = engine(), StateStore(tmp_path / "a.db")
    alerts = []
    for i in range(0, 44, 4):  # the first 44 records, then the process "dies"
        result = first.process(records[i:i + 4], keyword_scorer)
        alerts += write_batch(store, result, first.rules.longest_window_s)
    assert store.checkpoint("news", 0) == 44

    second = engine()  # a new owner rebuilds the partition from SQLite and carries on
    second.partitions[("news", 0)] = store.load_partition("news", 0, second)
    restored = second.partitions[("news", 0)].tickers["NOVA"]
    original = first.partitions[("news", 0)].tickers["NOVA"]
    assert restored.stats("short") == original.stats("short") and restored.released == original.released
    assert restored.buffered == original.buffered and restored.last_alert == original.last_alert
    result = second.process(records[44:], keyword_scorer)
    alerts += write_batch(store, result, second.rules.longest_window_s)
    assert [a.alert_id for a in alerts] == expected
    # writing a batch a second time is refused: the checkpoint is no longer the one it started from
    with pytest.raises(StaleStateError, match="the checkpoint is 50, not 44"):
        write_batch(store, result, second.rules.longest_window_s)
    assert len(store.alerts_after(0)) == len(expected)
    store.close()


def test_outbox_and_history(tmp_path):
    e, store = engine(), StateStore(tmp_path / "a.db")
    new = write_batch(store, e.process(neutral_then_negative(), keyword_scorer), 3600.0, webhook=True)
    assert [a["alert_id"] for _, a in store.alerts_after(0, published_only=True)] == [a.alert_id for a in new]
    assert len(store.pending_webhooks()) == len(new)
    lines: list[str] = []

    class Out:
        def write(self, text):
            lines.append(text)

        def flush(self):
            pass

    assert show_alerts(store, last=1, out=Out()) == 1
    assert "NOVA" in "".join(lines) and "plunge" in format_alert(new[0].to_dict())
    store.close()


class _Receiver(BaseHTTPRequestHandler):
    fail_first = 0
    received: list = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).received.append(body)
        status = 500 if len(type(self).received) <= type(self).fail_first else 200
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b"ok" if status == 200 else b"boom")

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("fail_first, status", [(2, "sent"), (10, "failed")])
def test_webhook_retries_with_backoff_and_keeps_failures(tmp_path, fail_first, status):
    handler = type("Receiver", (_Receiver,), {"fail_first": fail_first, "received": []})
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    e, store = engine(), StateStore(tmp_path / "a.db")
    new = write_batch(store, e.process(neutral_then_negative(), keyword_scorer), 3600.0, webhook=True)[:1]
    store.db.execute("UPDATE alerts SET webhook_status='disabled' WHERE alert_id!=?", (new[0].alert_id,))
    assert [a["alert_id"] for a, _ in store.pending_webhooks()] == [new[0].alert_id]
    sink = WebhookSink(f"http://127.0.0.1:{server.server_port}/hook", tmp_path / "a.db", "finance-monitor",
                       retries=3, backoff_s=0.01)
    sink.start()
    try:
        for _ in range(100):
            row = store.db.execute("SELECT webhook_status FROM alerts WHERE alert_id=?", (new[0].alert_id,)).fetchone()
            if row[0] != "pending":
                break
            threading.Event().wait(0.05)
    finally:
        sink.stop()
        sink.join(5)
        server.shutdown()
    assert row[0] == status
    failures = store.webhook_failures()
    assert len(failures) == min(fail_first, 3) and all("HTTP 500" in f["error"] for f in failures)
    payload = handler.received[0]
    assert payload["text"].startswith(":rotating_light: NOVA") and payload["alert"]["alert_id"] == new[0].alert_id
    assert payload == slack_payload(new[0].to_dict())
    store.close()


def test_replay_fans_out_by_ticker_with_synthetic_times(tmp_path):
    path = tmp_path / "news.csv"
    path.write_text("text,source\nNovagen and $ORBT merge,wire\nno company here,wire\n")
    messages = list(messages_from_file(path, ReplayOptions(start_ts=100.0, spacing_s=5.0),
                                       TickerExtractor({"NOVA": ("Novagen",)})))
    assert [(m["id"], m["ts"], m["tickers"]) for m in messages] == [("news-0", 100.0, ["NOVA", "ORBT"]),
                                                                     ("news-1", 105.0, [])]
    assert [k for k, _ in fan_out(messages[0])] == [b"NOVA", b"ORBT"]
    assert [k for k, _ in fan_out(messages[1])] == [None]


def test_settings_from_environment():
    config = config_from_env({"KAFKA_BOOTSTRAP_SERVERS": "b:1", "FINANCE_BATCH_SIZE": "8", "TEXTML_VAR_DIR": "/v",
                              "FINANCE_WEBHOOK_URL": "http://hook"})
    assert (config.bootstrap_servers, config.batch_size, config.webhook_url) == ("b:1", 8, "http://hook")
    assert config.db_path == Path("/v/finance_monitor/alerts.db")
    with pytest.raises(ValueError, match="FINANCE_BATCH_SIZE='many' is not an integer"):
        config_from_env({"FINANCE_BATCH_SIZE": "many"})


def test_cli_documents_every_command_and_reports_bad_rules(tmp_path):
    run = [sys.executable, "-m", "apps.finance_monitor"]
    help_text = subprocess.run([*run, "--help"], cwd=REPO_ROOT, capture_output=True, text=True).stdout
    for command in ("run", "replay", "alerts", "train-demo-model", "demo"):
        assert command in help_text
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text("windows: {short: 15m}\nrules: [{name: x, kind: spike, window: short}]\n")
    done = subprocess.run([*run, "run", "--rules", str(rules_file), "--registry", str(tmp_path)], cwd=REPO_ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert "rules[0].kind is 'spike'" in done.stderr
