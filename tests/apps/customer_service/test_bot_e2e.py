"""End to end: train the bot, start the real action server and the real Rasa server, talk over REST.

The browser test opens the web chat page in Debian's headless Chromium (driven by Playwright) and
asks a FAQ question there. Then one conversation covers a cited answer, the lost-card form with
validation, a hand-off with a masked ticket, the SQLite tracker store, and the action-server-down
path (it stops the action server, so it runs last). No mocks: Rasa 3.6 runs in its own
environment, the action server loads the real MiniLM embedder and the real KB index.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from apps.customer_service.ingest import ingest
from apps.customer_service.launch import (
    ServiceStartError,
    actions_ready,
    free_port,
    rasa_ready,
    start_service,
    stop_service,
    wait_until,
)
from apps.customer_service.rasa_project import train
from apps.customer_service.settings import APP_DIR, BotSettings
from apps.customer_service.tickets import TicketStore

pytestmark = [pytest.mark.rasa, pytest.mark.slow]
# Debian's chromium (infra/browser/install-chromium.sh); Playwright's own browser builds need its CDN
CHROMIUM = Path(os.environ.get("CS_CHROMIUM", "/usr/bin/chromium"))


def wait_for(ready, process, log: Path, what: str) -> None:
    try:
        wait_until(ready, process, log, what)
    except ServiceStartError as error:
        pytest.fail(str(error))


@pytest.fixture(scope="module")
def bot(tmp_path_factory: pytest.TempPathFactory, embedder) -> Iterator[dict]:
    state = tmp_path_factory.mktemp("bot-state")
    settings = BotSettings(state_dir=state, actions_port=free_port(), rasa_port=free_port())
    env = {**os.environ, "CS_STATE_DIR": str(state), "CS_ACTIONS_PORT": str(settings.actions_port),
           "CS_RASA_PORT": str(settings.rasa_port), "CS_EMBEDDER": "all-MiniLM-L6-v2", "CS_RERANKER": "none",
           "CS_INTENT_MODEL": "retrieval", "HF_HUB_OFFLINE": "1", "TEXTML_NUM_THREADS": "1"}
    ingest(APP_DIR / "knowledge", settings.index_dir, "all-MiniLM-L6-v2", embedder=embedder)
    actions_log, rasa_log = state / "actions.log", state / "rasa.log"
    actions = start_service("actions", actions_log, env)  # loads its models while Rasa trains
    processes = [actions]
    try:
        train(settings)
        rasa = start_service("rasa", rasa_log, env)
        processes.append(rasa)
        wait_for(lambda: actions_ready(settings.actions_url), actions, actions_log, "action server")
        wait_for(lambda: rasa_ready(settings.rasa_url, rasa_log), rasa, rasa_log, "Rasa server")
        yield {"settings": settings, "actions": actions, "rasa": rasa, "rasa_log": rasa_log, "env": env,
               "processes": processes}
    finally:
        for process in reversed(processes):
            stop_service(process)


def say(bot: dict, sender: str, text: str) -> list[dict]:
    reply = httpx.post(f"{bot['settings'].rasa_url}/webhooks/rest/webhook", json={"sender": sender, "message": text},
                       timeout=60)
    reply.raise_for_status()
    return reply.json()


def texts(messages: list[dict]) -> str:
    return "\n".join(m.get("text", "") for m in messages)


def test_web_chat_in_headless_chromium_shows_a_cited_answer(bot: dict) -> None:
    from playwright.sync_api import expect, sync_playwright

    if not CHROMIUM.is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: run infra/browser/install-chromium.sh (Debian's chromium package) "
                    "or set CS_CHROMIUM to a Chromium binary")
    assert bot["actions"].poll() is None and bot["rasa"].poll() is None, "both servers must still be up"
    with sync_playwright() as playwright:
        # --no-sandbox: CI containers run as root, where Chromium's sandbox refuses to start
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{bot['settings'].actions_url}/")
            expect(page.locator("h1")).to_have_text("Nimbus Bank support")
            page.fill("#text", "I ordered my card two weeks ago and it still hasn't arrived")
            page.click("button[type=submit]")
            expect(page.locator(".user")).to_have_text("I ordered my card two weeks ago and it still hasn't arrived")
            answer = page.locator(".bot", has_text="Source:")
            expect(answer).to_contain_text("Source: When your card will arrive", timeout=60_000)
            assert "not reachable" not in page.inner_text("#log") and not errors, errors
        finally:
            browser.close()


def test_conversation_answers_runs_the_form_hands_off_and_survives_restarts(bot: dict) -> None:
    sender = "e2e-customer"
    page = httpx.get(f"{bot['settings'].actions_url}/", timeout=10).text  # the web chat page
    assert "Nimbus Bank support" in page and f'"{bot["settings"].rasa_url}"' in page
    assert "Nimbus Bank assistant" in texts(say(bot, sender, "hello"))
    assert "didn't get any text" in texts(say(bot, "e2e-blank", "   "))
    assert texts(say(bot, "e2e-long", "my card has not arrived yet " * 300))  # very long: still answered

    reply = say(bot, sender, "I ordered my card two weeks ago and it still hasn't arrived")
    assert "Source: When your card will arrive" in texts(reply)
    kb = next(m["custom"]["kb"] for m in reply if "custom" in m)
    assert kb["decision"] == "answer" and kb["intent"] == "card_arrival"

    assert "last four digits" in texts(say(bot, sender, "I lost my card"))
    assert "Never share your full card number" in texts(say(bot, sender, "4111 1111 1111 1111"))
    assert "When did you lose it" in texts(say(bot, sender, "4321"))
    assert "block the card ending 4321" in texts(say(bot, sender, "this morning"))
    assert "card ending 4321 (lost this morning) is blocked" in texts(say(bot, sender, "yes"))

    reply = texts(say(bot, sender, "I want to talk to a human"))
    assert "Your ticket number is T-000001" in reply
    ticket = TicketStore(bot["settings"].tickets_db).list()[0]
    stored = json.dumps(ticket.transcript)
    assert ticket.sender_id == sender and "still hasn't arrived" in stored
    assert "[CARD ****1111]" in stored and "4111 1111" not in stored

    # the conversation is in the SQL tracker store (SQLite) and resumes after a restart of the Rasa server
    db = bot["settings"].rasa_dir / "tracker.sqlite3"
    with sqlite3.connect(db) as connection:
        count = connection.execute("SELECT COUNT(*) FROM events WHERE sender_id = ?", (sender,)).fetchone()[0]
    assert count > 20
    stop_service(bot["rasa"])
    restarted_log = bot["rasa_log"].with_name("rasa-restarted.log")
    rasa = start_service("rasa", restarted_log, bot["env"])
    bot["processes"].append(rasa)
    wait_for(lambda: rasa_ready(bot["settings"].rasa_url, restarted_log), rasa, restarted_log, "restarted Rasa")
    tracker = httpx.get(f"{bot['settings'].rasa_url}/conversations/{sender}/tracker", timeout=30).json()
    assert tracker["slots"]["ticket_id"] == "T-000001"
    assert "I lost my card" in [e.get("text") for e in tracker["events"] if e["event"] == "user"]

    # the action server goes down: the bot says so and how to reach a person, it does not go silent
    stop_service(bot["actions"])
    reply = texts(say(bot, sender, "how do I top up with my debit card?"))
    assert "can't answer questions right now" in reply and "a person will take over" in reply
