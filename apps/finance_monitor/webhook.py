"""The webhook sink: posts each new alert as Slack-compatible JSON, retrying with back-off.

It runs in its own thread from the SQLite outbox (alerts whose ``webhook_status`` is
``pending``), so a slow or failing endpoint never holds up the stream. Every failed attempt is
kept in ``webhook_failures``; after the last retry the alert is marked ``failed``.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import httpx

from apps.finance_monitor.store import StateStore

log = logging.getLogger(__name__)


def slack_payload(alert: dict) -> dict:
    """``text`` for any Slack-compatible receiver, ``blocks`` for a richer Slack message, ``alert`` for machines."""
    figures = ", ".join(f"{k}={v}" for k, v in alert["figures"].items())
    evidence = "\n".join(f"• {e['text']}" for e in alert["evidence"])
    title = f":rotating_light: {alert['ticker']}: {alert['rule']} ({alert['window']} window) at {alert['ts']}"
    return {
        "text": f"{title}\n{figures}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*\n{figures}"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": evidence or "(no evidence)"}},
            {"type": "context", "elements": [{"type": "mrkdwn",
                                              "text": f"model {alert['model_version']} · id {alert['alert_id']}"}]},
        ],
        "alert": alert,
    }


class WebhookSink(threading.Thread):
    """Delivers pending alerts to ``url`` until ``stop`` is set."""

    def __init__(self, url: str, db_path: Path, group: str, retries: int = 5, backoff_s: float = 0.5,
                 timeout_s: float = 5.0, on_failure=None) -> None:
        super().__init__(name="finance-webhook", daemon=True)
        self.url = url
        self.db_path = db_path
        self.group = group
        self.retries = retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.on_failure = on_failure or (lambda: None)
        self.stop_event = threading.Event()
        self.wake = threading.Event()

    def run(self) -> None:
        store = StateStore(self.db_path, self.group)
        try:
            with httpx.Client(timeout=self.timeout_s) as client:
                while not self.stop_event.is_set():
                    for alert, attempts in store.pending_webhooks():
                        if self.stop_event.is_set():
                            break
                        self._deliver(client, store, alert, attempts)
                    self.wake.wait(1.0)
                    self.wake.clear()
        finally:
            store.close()

    def _deliver(self, client: httpx.Client, store: StateStore, alert: dict, attempts: int) -> None:
        errors: list[str] = []
        delay = self.backoff_s
        while attempts < self.retries and not self.stop_event.is_set():
            attempts += 1
            try:
                response = client.post(self.url, json=slack_payload(alert))
                if response.status_code < 300:
                    store.record_webhook(alert["alert_id"], "sent", attempts, errors)
                    return
                errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
            except httpx.HTTPError as error:
                errors.append(f"{type(error).__name__}: {error}")
            self.on_failure()
            log.warning("webhook attempt %d for alert %s failed: %s", attempts, alert["alert_id"], errors[-1])
            self.stop_event.wait(delay)
            delay *= 2
        status = "failed" if attempts >= self.retries else "pending"  # stopped mid-retry: try again next start
        store.record_webhook(alert["alert_id"], status, attempts, errors)
        if status == "failed":
            log.error("webhook gave up on alert %s after %d attempts; kept in webhook_failures",
                      alert["alert_id"], attempts)

    def stop(self) -> None:
        self.stop_event.set()
        self.wake.set()
