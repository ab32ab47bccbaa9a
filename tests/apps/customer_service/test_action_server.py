"""The action server's token check (the pure part), and the real server's ``/metrics`` and decision log.

The e2e test runs the whole bot; here only the action server runs, on the small knowledge base,
and Rasa's ``/webhook`` calls are written by hand.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from apps.customer_service.action_server import OPEN_PATHS, bearer_matches
from apps.customer_service.events import EventLog
from apps.customer_service.ingest import ingest
from apps.customer_service.launch import (
    ServiceStartError,
    actions_ready,
    free_port,
    start_service,
    stop_service,
    wait_until,
)
from apps.customer_service.settings import BotSettings

from .conftest import write_kb

TOKEN = "s3cret-token-0123456789"


@pytest.mark.parametrize(("header", "expected"), [
    (f"Bearer {TOKEN}", True), (f"bearer {TOKEN}", True), (f"  Bearer   {TOKEN} ", True),
    (None, False), ("", False), ("Bearer", False), (f"Basic {TOKEN}", False), (TOKEN, False),
    (f"Bearer {TOKEN}x", False), (f"Bearer {TOKEN[:-1]}", False), ("Bearer ü", False),
])
def test_bearer_matches(header: str | None, expected: bool) -> None:
    assert bearer_matches(header, TOKEN) is expected


def test_only_the_page_its_socketio_client_and_health_are_open() -> None:
    # /metrics too needs the token: what customers ask is the bank's business (/tickets: the staff token)
    assert OPEN_PATHS == {"/", "/health", "/vendor/socket.io.min.js"}


# ---------------------------------------------------------------- the real action server: /metrics and decisions
@pytest.fixture(scope="module")
def action_server(tmp_path_factory: pytest.TempPathFactory, embedder) -> Iterator[dict]:
    """``python -m apps.customer_service actions`` on a free port with the small KB and the MiniLM embedder."""
    state = tmp_path_factory.mktemp("actions-state")
    kb = write_kb(state / "kb")
    port = free_port()
    env = {**os.environ, "CS_STATE_DIR": str(state), "CS_KB_DIR": str(kb), "CS_ACTIONS_PORT": str(port),
           "CS_ACTIONS_TOKEN": TOKEN, "CS_EMBEDDER": "all-MiniLM-L6-v2", "CS_RERANKER": "none",
           "CS_INTENT_MODEL": "retrieval", "CS_TUNED_FILE": str(state / "tuned.json"), "HF_HUB_OFFLINE": "1"}
    settings = BotSettings(state_dir=state, kb_dir=kb, actions_port=port)
    ingest(kb, settings.index_dir, "all-MiniLM-L6-v2", embedder=embedder)  # so the server needs no re-ingest
    log = state / "actions.log"
    process = start_service("actions", log, env)
    try:
        try:
            wait_until(lambda: actions_ready(settings.actions_url), process, log, "action server")
        except ServiceStartError as error:
            pytest.fail(str(error))
        yield {"url": settings.actions_url, "settings": settings, "log": log}
    finally:
        stop_service(process)


def call_action(url: str, action: str, text: str, intent: str) -> httpx.Response:
    """What Rasa posts to /webhook to run ``action`` on the latest message."""
    latest = {"text": text, "intent": {"name": intent, "confidence": 0.9}, "intent_ranking": []}
    body = {"next_action": action, "sender_id": "metrics-test", "version": "3.6.0",
            "tracker": {"sender_id": "metrics-test", "slots": {"failed_attempts": 0.0}, "latest_message": latest,
                        "events": [{"event": "user", "text": text}], "paused": False, "followup_action": None,
                        "active_loop": {}, "latest_action_name": "action_listen"},
            "domain": {"responses": {"utter_out_of_scope": [{"text": "Sorry, only bank questions."}]}}}
    return httpx.post(f"{url}/webhook", json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)


def metric(text: str, sample: str) -> float:
    line = next((line for line in text.splitlines() if line.startswith(sample + " ")), None)
    return 0.0 if line is None else float(line.split()[-1])


@pytest.mark.slow
def test_metrics_need_the_token_and_count_decisions(action_server: dict) -> None:
    url = action_server["url"]
    assert httpx.get(f"{url}/metrics", timeout=10).status_code == 401
    assert httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer not-the-token-at-all"}).status_code == 401
    before = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert before.status_code == 200 and before.headers["content-type"].startswith("text/plain")
    assert metric(before.text, 'cs_decisions_total{decision="answer"}') == 0.0

    answered = call_action(url, "action_answer_from_kb", "my card still hasn't arrived", "card_arrival")
    assert answered.status_code == 200
    assert answered.json()["responses"][0]["text"].endswith("Source: When your card will arrive")
    declined = call_action(url, "action_decline", "my card 4111 1111 1111 1111, sing me a song", "out_of_scope")
    assert declined.status_code == 200
    after = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).text
    assert metric(after, 'cs_decisions_total{decision="answer"}') == 1.0
    assert metric(after, 'cs_decisions_total{decision="decline"}') == 1.0
    assert metric(after, 'cs_intent_decisions_total{intent="card_arrival"}') == 1.0
    assert metric(after, 'cs_action_seconds_count{action="action_answer_from_kb"}') == 1.0
    assert metric(after, 'cs_action_seconds_count{action="action_decline"}') == 1.0
    assert "arrived" not in after and "song" not in after and "4111" not in after  # counters only

    logged = EventLog(action_server["settings"].events_db).read()
    assert [(d.decision, d.intent, d.text) for d in logged] == [
        ("answer", "card_arrival", "my card still hasn't arrived"),
        ("decline", "out_of_scope", "my card [CARD ****1111], sing me a song")]
    assert "4111 1111" not in action_server["log"].read_text(errors="replace")
