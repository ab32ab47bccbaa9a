"""End to end: a hand-off that hands over, on the real Rasa server and action server (``test_bot_e2e``'s fixture).

In Debian's headless Chromium (Playwright) a customer asks for a person in the web chat: the bot
says it will stay quiet and does; an agent answers from the CLI and from the action server's
``/tickets`` endpoint (the staff token only), both replies appear in the open page; closing the
ticket brings the bot back, and it answers the next question. Over REST the same conversation is
silent after the hand-off, and the ticket's transcript holds the customer's later messages masked.
No mocks; the servers train and start once for this module.
"""

# ruff: noqa: F811 - the tests take test_bot_e2e's `bot` fixture, imported below, as their argument
from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import httpx
import pytest

from apps.customer_service.settings import REPO_ROOT
from apps.customer_service.tickets import TicketStore
from apps.customer_service.tokens import staff_token
from infra.web_assets import socketio_client_file

from .test_bot_e2e import CHROMIUM, bot, say, texts, tracker  # noqa: F401 - bot: the module's servers

pytestmark = [pytest.mark.rasa, pytest.mark.slow]
FAQ = "I ordered my card two weeks ago and it still hasn't arrived"


def cli(bot: dict, *args: str) -> subprocess.CompletedProcess:
    """``python -m apps.customer_service tickets ...`` as an agent runs it, against the test's servers."""
    return subprocess.run([sys.executable, "-m", "apps.customer_service", "tickets", *args], cwd=REPO_ROOT,
                          env=bot["env"], capture_output=True, text=True, timeout=60)


def staff(bot: dict, method: str, path: str, token: str | None = None, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.request(method, f"{bot['settings'].actions_url}{path}", headers=headers, timeout=30, **kwargs)


def wait_for_user_event(bot: dict, sender: str, text: str, timeout: float = 60) -> list[dict]:
    """The conversation's events once Rasa has recorded the customer's ``text`` (it is handled by then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = tracker(bot, sender, token=bot["token"], include_events="ALL").json()["events"]
        if any(e["event"] == "user" and e.get("text") == text for e in events):
            return events
        time.sleep(0.5)
    pytest.fail(f"Rasa did not record {text!r} from {sender} within {timeout:.0f} s")


def after_last(events: list[dict], text: str) -> list[dict]:
    index = max(i for i, e in enumerate(events) if e["event"] == "user" and e.get("text") == text)
    return events[index + 1:]


def test_rest_conversation_is_silent_after_the_hand_off_and_the_bot_is_back_after_close(bot: dict) -> None:
    sender, token = "handover-rest", staff_token(bot["settings"])
    reply = texts(say(bot, sender, "I want to talk to a human"))
    assert "I'll stay quiet from now on" in reply
    number = re.search(r"Your ticket number is (T-\d{6})", reply).group(1)
    assert say(bot, sender, "my email is jane.doe@example.com, please hurry") == []  # recorded, not answered
    state = tracker(bot, sender, token=bot["token"]).json()
    assert state["paused"] and state["events"][-1]["event"] == "user"

    shown = cli(bot, "show", number)
    assert shown.returncode == 0, shown.stderr
    assert "user: my email is [EMAIL], please hurry" in shown.stdout and "jane.doe" not in shown.stdout
    replied = cli(bot, "reply", number, "Hello, this is Sam from the card team.")
    assert replied.returncode == 0, replied.stderr
    assert "cannot show messages the customer did not ask for" in replied.stdout  # REST: kept, not pushed
    assert tracker(bot, sender, token=bot["token"]).json()["events"][-1]["text"] == \
        "Hello, this is Sam from the card team."

    closed = staff(bot, "POST", f"/tickets/{number}/close", token)
    assert closed.status_code == 200, closed.text
    assert closed.json()["ticket"]["status"] == "closed" and closed.json()["channel"] == "rest"
    assert not tracker(bot, sender, token=bot["token"]).json()["paused"]
    assert "Source: When your card will arrive" in texts(say(bot, sender, FAQ))  # the bot answers again

    ticket = TicketStore(bot["settings"].tickets_db).get(int(number[2:]))
    assert [t["speaker"] for t in ticket.transcript][-3:] == ["user", "agent", "bot"]
    assert "my email is [EMAIL], please hurry" in json.dumps(ticket.transcript)
    # bad input: nothing changes, the error says why
    assert staff(bot, "POST", f"/tickets/{number}/close", token).status_code == 409
    again = cli(bot, "reply", number, "one more thing")
    assert again.returncode == 2 and f"ticket {number} is closed" in again.stderr
    assert TicketStore(bot["settings"].tickets_db).get(int(number[2:])) == ticket


def test_staff_endpoints_need_the_staff_token_and_refuse_bad_input(bot: dict) -> None:
    sender, token = "handover-auth", staff_token(bot["settings"])
    number = re.search(r"(T-\d{6})", texts(say(bot, sender, "I want to talk to a human"))).group(1)
    path, body = f"/tickets/{number}/reply", {"json": {"text": "hi"}}
    for wrong in (None, "not-the-staff-token-at-all", bot["actions_token"]):  # Rasa's token is no agent's
        answer = staff(bot, "POST", path, wrong, **body)
        assert answer.status_code == 401 and "staff token" in answer.json()["error"]
        assert staff(bot, "GET", "/tickets", wrong).status_code == 401
    assert staff(bot, "POST", "/webhook", token, json={}).status_code == 401  # and an agent's runs no action
    assert staff(bot, "POST", path, token, json={"text": "   "}).status_code == 422
    assert staff(bot, "POST", path, token, json={"message": "hi"}).status_code == 422
    assert staff(bot, "POST", "/tickets/T-999999/reply", token, **body).status_code == 404
    assert staff(bot, "GET", "/tickets/forty-two", token).status_code == 422
    listed = staff(bot, "GET", "/tickets", token).json()["tickets"]
    assert number in [t["number"] for t in listed]
    events = tracker(bot, sender, token=bot["token"]).json()["events"]
    assert not [e for e in after_last(events, "I want to talk to a human") if e["event"] == "user"]
    assert staff(bot, "POST", f"/tickets/{number}/close", token).status_code == 200


def test_agent_replies_reach_the_web_chat_and_close_gives_it_back_to_the_bot(bot: dict) -> None:
    from playwright.sync_api import expect, sync_playwright

    if not CHROMIUM.is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: run infra/browser/install-chromium.sh or set CS_CHROMIUM")
    if not socketio_client_file(bot["settings"].var_dir).is_file():
        pytest.fail("the web chat's socket.io client is missing: run `make web-assets`")
    token = staff_token(bot["settings"])
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{bot['settings'].actions_url}/")
            page.fill("#text", "I want to talk to a human")
            page.click("button[type=submit]")
            expect(page.locator(".bot", has_text="I'll stay quiet")).to_have_count(1, timeout=60_000)
            expect(page.locator("#status")).to_contain_text("a person from our team will answer here")
            number = re.search(r"T-\d{6}", page.inner_text("#log")).group(0)
            sender = page.evaluate("sessionStorage.getItem('nimbus-chat-session')")
            assert re.fullmatch(r"web-[0-9a-f]{32}", sender), sender

            bubbles = page.locator(".bot").count()
            page.fill("#text", "are you there? my card is 4111 1111 1111 1111")
            page.click("button[type=submit]")
            events = wait_for_user_event(bot, sender, "are you there? my card is [CARD ****1111]")
            time.sleep(2)  # had the bot answered, it would have by now
            assert page.locator(".bot").count() == bubbles
            assert not [e for e in after_last(events, "are you there? my card is [CARD ****1111]")
                        if e["event"] == "bot"]

            replied = cli(bot, "reply", number, "Hi, Sam here. I can see your card; one moment please.")
            assert replied.returncode == 0 and "sent to the customer's socketio chat" in replied.stdout, replied
            expect(page.locator(".bot.agent")).to_have_text("Hi, Sam here. I can see your card; one moment please.",
                                                            timeout=30_000)
            answer = staff(bot, "POST", f"/tickets/{number}/reply", token,
                           json={"text": "Done: a new card is on its way. Mail me at sam@nimbus.example if needed."})
            assert answer.status_code == 200 and answer.json()["pushed"] is True, answer.text
            expect(page.locator(".bot.agent")).to_have_count(2, timeout=30_000)
            expect(page.locator(".bot.agent").last).to_have_text("Done: a new card is on its way. Mail me at "
                                                                 "[EMAIL] if needed.")
            expect(page.locator("#status")).to_contain_text("you are talking to our team")

            shown = staff(bot, "GET", f"/tickets/{number}", token).json()["ticket"]
            assert [t["speaker"] for t in shown["transcript"]][-3:] == ["user", "agent", "agent"]
            assert "4111 1111" not in json.dumps(shown) and "[CARD ****1111]" in json.dumps(shown)

            closed = cli(bot, "close", number)
            assert closed.returncode == 0 and "closed; the bot is back in the customer's socketio chat" in \
                closed.stdout, closed
            expect(page.locator(".bot", has_text="chatting with the Nimbus Bank assistant again")).to_have_count(
                1, timeout=30_000)
            expect(page.locator("#status")).to_have_text("")
            page.fill("#text", FAQ)
            page.click("button[type=submit]")
            expect(page.locator(".bot", has_text="Source:")).to_contain_text("Source: When your card will arrive",
                                                                             timeout=60_000)
            assert not errors, errors
        finally:
            browser.close()
