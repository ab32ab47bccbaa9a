"""End to end: train the bot, start the real action server and the real Rasa server, talk over REST.

The browser test opens the web chat page in Debian's headless Chromium (driven by Playwright) and
asks a FAQ question there. The security tests check what the servers expose: both listen on
loopback, Rasa's API and the action server need their tokens (which stay off the command line),
CORS and socket.io grant only the web chat's origin, and personal data typed into the chat (REST
and socket.io) is masked before it reaches the tracker store, the logs or a ticket. Then one
conversation covers a cited answer, the lost-card form with validation, a hand-off with a masked
ticket, the SQLite tracker store, a Rasa restart (same token file), and the action-server-down
path (it stops the action server, so it runs last). No mocks: Rasa 3.6 runs in its own
environment, the action server loads the real MiniLM embedder and the real KB index.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from apps.customer_service.handover import handover_for
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
from apps.customer_service.tokens import actions_token, rasa_token

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
        token = rasa_token(settings)  # the file the servers created (or will: the same one either way)
        wait_for(lambda: actions_ready(settings.actions_url), actions, actions_log, "action server")
        wait_for(lambda: rasa_ready(settings.rasa_url, rasa_log, token), rasa, rasa_log, "Rasa server")
        yield {"settings": settings, "actions": actions, "rasa": rasa, "rasa_log": rasa_log, "env": env,
               "processes": processes, "token": token, "actions_token": actions_token(settings)}
    finally:
        for process in reversed(processes):
            stop_service(process)


def say(bot: dict, sender: str, text: str) -> list[dict]:
    """One message through the REST channel, as the web page sends it (no token)."""
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


def tracker(bot: dict, sender: str, **params: str) -> httpx.Response:
    return httpx.get(f"{bot['settings'].rasa_url}/conversations/{sender}/tracker", params=params, timeout=30)


def test_servers_listen_on_loopback_and_keep_tokens_off_the_command_line(bot: dict) -> None:
    settings = bot["settings"]
    for process, port in ((bot["rasa"], settings.rasa_port), (bot["actions"], settings.actions_port)):
        listening = {(c.laddr.ip, c.laddr.port) for c in psutil.Process(process.pid).net_connections("inet")
                     if c.status == psutil.CONN_LISTEN}
        assert listening == {("127.0.0.1", port)}, listening
    command = psutil.Process(bot["rasa"].pid).cmdline()  # what `ps` shows every user
    assert command[command.index("--interface") + 1] == "127.0.0.1" and "--auth-token" not in command
    assert bot["token"] not in " ".join(command) and bot["actions_token"] not in " ".join(command)
    for path in (settings.rasa_token_file, settings.actions_token_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(settings.secrets_dir.stat().st_mode) == 0o700
    for log in (bot["rasa_log"], bot["rasa_log"].with_name("actions.log")):
        text = log.read_text(errors="replace")
        assert bot["token"] not in text and bot["actions_token"] not in text


def test_rasa_http_api_needs_the_token(bot: dict) -> None:
    url = bot["settings"].rasa_url
    assert tracker(bot, "e2e-auth").status_code == 401
    assert tracker(bot, "e2e-auth", token="not-the-token-at-all").status_code == 401
    assert tracker(bot, "e2e-auth", token=bot["token"]).status_code == 200
    assert httpx.get(f"{url}/status", timeout=10).status_code == 401
    assert httpx.post(f"{url}/model/parse", json={"text": "hello"}, timeout=30).status_code == 401
    hello = httpx.get(f"{url}/", timeout=10)  # open: what an outside health check may use
    assert hello.status_code == 200 and "Hello from Rasa" in hello.text


def test_cross_origin_access_only_for_the_web_chat(bot: dict) -> None:
    settings = bot["settings"]
    page_origin, evil = f"http://127.0.0.1:{settings.actions_port}", "http://evil.example"
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    for origin, granted in ((page_origin, True), (f"http://localhost:{settings.actions_port}", True), (evil, False)):
        answers = [
            httpx.options(f"{settings.rasa_url}/webhooks/rest/webhook", headers={"Origin": origin, **preflight}),
            httpx.get(f"{settings.rasa_url}/", headers={"Origin": origin}),
            httpx.get(f"{settings.actions_url}/health", headers={"Origin": origin}),
        ]
        for answer in answers:
            assert answer.headers.get_list("access-control-allow-origin") == ([origin] if granted else []), answer
    # socket.io: the engine.io handshake answers, but the connection is refused for a foreign origin
    assert SocketIO(settings.rasa_url, evil).connect() is False
    assert SocketIO(settings.rasa_url, page_origin).connect() is True


def test_action_server_needs_the_token(bot: dict) -> None:
    url, auth = bot["settings"].actions_url, {"Authorization": f"Bearer {bot['actions_token']}"}
    body = {"next_action": "action_handoff", "sender_id": "intruder", "tracker": {"sender_id": "intruder"}}
    assert httpx.post(f"{url}/webhook", json=body, timeout=30).status_code == 401
    assert httpx.post(f"{url}/webhook", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(f"{url}/actions", timeout=10).status_code == 401
    assert httpx.get(f"{url}/metrics", timeout=10).status_code == 401
    assert httpx.post(f"{url}/intents", json={"texts": ["hello"]}, timeout=30).status_code == 401
    intents = httpx.post(f"{url}/intents", json={"texts": ["my card has not arrived"]}, headers=auth, timeout=30)
    assert intents.status_code == 200 and intents.json()["rankings"][0]
    assert httpx.get(f"{url}/actions", headers=auth, timeout=10).status_code == 200
    assert "cs_decisions_total" in httpx.get(f"{url}/metrics", headers=auth, timeout=10).text
    assert httpx.get(f"{url}/health", timeout=10).status_code == 200 and httpx.get(f"{url}/").status_code == 200
    assert not [t for t in TicketStore(bot["settings"].tickets_db).list(None) if t.sender_id == "intruder"]


class SocketIO:
    """Just enough of a socket.io client (engine.io 4 long-polling) to send one message and read the replies."""

    def __init__(self, rasa_url: str, origin: str) -> None:
        self.url = f"{rasa_url}/socket.io/"
        self.client = httpx.Client(headers={"Origin": origin}, timeout=40)
        handshake = self.client.get(self.url, params={"EIO": "4", "transport": "polling"})
        handshake.raise_for_status()
        self.params = {"EIO": "4", "transport": "polling", "sid": json.loads(handshake.text[1:])["sid"]}

    def send(self, packet: str) -> None:
        self.client.post(self.url, params=self.params, content=packet).raise_for_status()

    def receive(self) -> list[str]:
        packets = self.client.get(self.url, params=self.params).text.split("\x1e")
        if "2" in packets:
            self.send("3")  # answer the server's ping
        return packets

    def connect(self) -> bool:
        self.send("40")
        return self.receive()[0].startswith("40")

    def message(self, session_id: str, text: str, timeout: float = 60) -> list[dict]:
        """Send ``text`` in session ``session_id``; the ``bot_uttered`` payloads until a text one arrives."""
        assert self.connect()
        self.send("42" + json.dumps(["session_request", {"session_id": session_id}]))
        self.send("42" + json.dumps(["user_uttered", {"message": text, "session_id": session_id}]))
        replies: list[dict] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not any("text" in r for r in replies):
            replies += [json.loads(p[2:])[1] for p in self.receive() if p.startswith('42["bot_uttered"')]
        return replies


# what the scripted customer types; none of it may be stored as typed
CARD, CARD_DASHED, CARD_DIGITS = "4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111"
IBAN, IBAN_COMPACT = "GB82 WEST 1234 5698 7654 32", "gb82west12345698765432"
EMAIL, PHONE = "jane.doe@example.com", "+44 20 7946 0958"
SOCKET_CARD = "5500 0000 0000 0004"
RAW = (CARD, CARD_DASHED, CARD_DIGITS, IBAN, IBAN_COMPACT, IBAN_COMPACT.upper(), EMAIL, PHONE, SOCKET_CARD,
       "5500000000000004", "jane.doe", "7946 0958")
# the same with every separator removed, lower case: finds "4111.1111 1111-1111", "GB82WEST...", ...
RAW_COMPACT = ("4111111111111111", "5500000000000004", "gb82west12345698765432", "janedoeexamplecom", "442079460958")


def raw_personal_data(text: str) -> list[str]:
    compact = re.sub(r"[^0-9a-z]", "", text.lower())
    return [raw for raw in RAW if raw in text] + [raw for raw in RAW_COMPACT if raw in compact]


def sqlite_text(path: Path) -> str:
    """Every value of every table, as text."""
    with sqlite3.connect(path) as connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return "\n".join(" ".join(map(str, row)) for table in tables
                         for row in connection.execute(f'SELECT * FROM "{table}"'))


def test_personal_data_is_masked_before_it_is_stored_or_logged(bot: dict) -> None:
    sender = "e2e-pii"
    script = {  # what the customer types -> what Rasa may see and store
        f"I was charged twice on {CARD_DASHED}": "I was charged twice on [CARD ****1111]",
        f"please send the refund to {IBAN}": "please send the refund to [IBAN GB…]",
        f"or to {IBAN_COMPACT}": "or to [IBAN GB…]",
        f"update my contact details: {EMAIL}, {PHONE}": "update my contact details: [EMAIL], [PHONE]",
    }
    for text in script:  # answered, or handed off: then the bot is quiet and the message waits for a person
        assert texts(say(bot, sender, text)) or tracker(bot, sender, token=bot["token"]).json()["paused"]
    for ticket in TicketStore(bot["settings"].tickets_db).list():  # a person gives it back to the bot
        if ticket.sender_id == sender:
            handover_for(bot["settings"]).close(ticket.id)  # and copies the messages since into the ticket
    assert "last four digits" in texts(say(bot, sender, "I lost my card"))
    for typed in (CARD, CARD_DIGITS):  # the form gets "[CARD ****1111]": still the same advice
        assert "Never share your full card number" in texts(say(bot, sender, typed))
    assert "When did you lose it" in texts(say(bot, sender, "4321"))
    assert "block the card ending 4321" in texts(say(bot, sender, "this morning"))
    assert "card ending 4321 (lost this morning) is blocked" in texts(say(bot, sender, "yes"))
    assert "Your ticket number is" in texts(say(bot, sender, "I want to talk to a human"))
    socket_replies = SocketIO(bot["settings"].rasa_url, f"http://127.0.0.1:{bot['settings'].actions_port}").message(
        "e2e-pii-socket", f"my card {SOCKET_CARD} and {EMAIL}")
    assert any(reply.get("text") for reply in socket_replies), socket_replies

    user_texts = [e["text"] for e in tracker(bot, sender, token=bot["token"]).json()["events"] if e["event"] == "user"]
    assert user_texts == [*script.values(), "I lost my card", "[CARD ****1111]", "[CARD ****1111]", "4321",
                          "this morning", "yes", "I want to talk to a human"]
    socket_events = tracker(bot, "e2e-pii-socket", token=bot["token"]).json()["events"]
    assert [e["text"] for e in socket_events if e["event"] == "user"] == ["my card [CARD ****0004] and [EMAIL]"]
    tickets = [t for t in TicketStore(bot["settings"].tickets_db).list(None) if t.sender_id == sender]
    stored = json.dumps([t.transcript for t in tickets], ensure_ascii=False)
    assert all(mask in stored for mask in ("[CARD ****1111]", "[IBAN GB…]", "[EMAIL]", "[PHONE]"))

    state = bot["settings"].state_dir
    found = {"tracker store": raw_personal_data(sqlite_text(bot["settings"].rasa_dir / "tracker.sqlite3")),
             "tickets": raw_personal_data(sqlite_text(bot["settings"].tickets_db))}
    for path in sorted(p for p in state.rglob("*") if p.is_file()):  # logs, databases, journals, models...
        found[str(path.relative_to(state))] = raw_personal_data(path.read_bytes().decode("latin-1"))
    assert {where: raw for where, raw in found.items() if raw} == {}
    assert (state / "actions.log").stat().st_size and bot["rasa_log"].stat().st_size  # the scan read real logs


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
    number = re.search(r"Your ticket number is (T-\d{6})", reply).group(1)
    ticket = next(t for t in TicketStore(bot["settings"].tickets_db).list() if t.number == number)
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
    wait_for(lambda: rasa_ready(bot["settings"].rasa_url, restarted_log, bot["token"]), rasa, restarted_log,
             "restarted Rasa")
    # the restart reused the token file: same token, still 0600
    assert bot["settings"].rasa_token_file.read_text().strip() == bot["token"]
    assert stat.S_IMODE(bot["settings"].rasa_token_file.stat().st_mode) == 0o600
    events = tracker(bot, sender, token=bot["token"]).json()
    assert events["slots"]["ticket_id"] == number
    assert "I lost my card" in [e.get("text") for e in events["events"] if e["event"] == "user"]

    # the action server goes down: the bot says so and how to reach a person, it does not go silent
    # (in another conversation: this one is handed off, so the bot stays quiet in it)
    stop_service(bot["actions"])
    reply = texts(say(bot, "e2e-actions-down", "how do I top up with my debit card?"))
    assert "can't answer questions right now" in reply and "a person will take over" in reply
