"""End to end: the support desk in headless Chromium, next to a customer's web chat, on the real servers.

A staff member logs in at ``/desk/login`` (a wrong token first, then the right one, from the
keyboard); a customer in another browser context gets an answer, a decline and a hand-off in the
web chat; the desk shows all three in its counts, the latency table, the new ticket with its masked
transcript and the declined question among the unanswered ones, by itself (it polls). The reply
box sends a reply that appears in the customer's chat, and "Close ticket" gives the conversation
back to the bot. Screenshots at a laptop's and a phone's size go to ``var/screenshots/``. No mocks;
the servers train and start once for this module (``test_bot_e2e``'s fixture).
"""

# ruff: noqa: F811 - the tests take test_bot_e2e's `bot` fixture, imported below, as their argument
from __future__ import annotations

import re
import time

import httpx
import pytest

from apps.customer_service.settings import REPO_ROOT
from apps.customer_service.tokens import staff_token
from infra.web_assets import socketio_client_file

from .test_bot_e2e import CHROMIUM, bot  # noqa: F401 - bot: the module's servers
from .test_handover_e2e import wait_for_user_event

pytestmark = [pytest.mark.rasa, pytest.mark.slow]
SCREENSHOTS = REPO_ROOT / "var" / "screenshots"
FAQ = "I ordered my card two weeks ago and it still hasn't arrived"
OUT_OF_SCOPE = "sing me a song"
HUMAN = "I want to talk to a human"
WAITING = "are you there? my card is 4111 1111 1111 1111"


def test_desk_data_needs_the_staff_login_or_token(bot: dict) -> None:
    url, token = bot["settings"].actions_url, staff_token(bot["settings"])
    for wrong in ({}, {"Authorization": "Bearer not-the-staff-token-at-all"},
                  {"Authorization": f"Bearer {bot['actions_token']}"}):  # Rasa's token opens no desk
        answer = httpx.get(f"{url}/desk/data", headers=wrong, timeout=30)
        assert answer.status_code == 401 and "staff login" in answer.json()["error"]
    page = httpx.get(f"{url}/desk", timeout=30)
    assert page.status_code == 303 and page.headers["location"] == "/desk/login"
    answer = httpx.get(f"{url}/desk/data", params={"period": "3d"}, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 422 and "period '3d' is not one of 1h, 24h, 7d" in answer.json()["error"]
    data = httpx.get(f"{url}/desk/data", headers={"Authorization": f"Bearer {token}"}, timeout=60).json()
    assert set(data["counts"]) == {"answer", "clarify", "decline", "handoff", "unavailable"}
    assert data["charts"]["shares"].startswith("<svg")
    login = httpx.post(f"{url}/desk/login", data={"token": token}, headers={"Origin": "http://evil.example"})
    assert login.status_code == 403 and "set-cookie" not in login.headers


def test_desk_shows_what_customers_got_and_answers_a_ticket(bot: dict) -> None:
    from playwright.sync_api import expect, sync_playwright

    if not CHROMIUM.is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: run infra/browser/install-chromium.sh or set CS_CHROMIUM")
    if not socketio_client_file(bot["settings"].var_dir).is_file():
        pytest.fail("the web chat's socket.io client is missing: run `make web-assets`")
    url, token = bot["settings"].actions_url, staff_token(bot["settings"])
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            staff = browser.new_context(viewport={"width": 1366, "height": 900})
            desk = staff.new_page()
            errors: list[str] = []
            desk.on("pageerror", lambda error: errors.append(str(error)))
            desk.goto(f"{url}/desk")
            expect(desk).to_have_url(f"{url}/desk/login")
            desk.get_by_label("Staff token").fill("not-the-staff-token-0123456789")
            desk.get_by_role("button", name="Log in").click()
            expect(desk.get_by_role("alert")).to_contain_text("That is not the staff token")
            desk.get_by_label("Staff token").fill(token)
            desk.keyboard.press("Enter")
            expect(desk).to_have_url(f"{url}/desk")
            cookie = next(c for c in staff.cookies() if c["name"] == "cs_desk_session")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["value"] != token
            assert token not in desk.content()
            assert desk.evaluate("sessionStorage.length + localStorage.length + document.cookie.length") == 0
            expect(desk.locator("#tile-answer")).to_have_attribute("data-count", "0", timeout=30_000)

            customer = browser.new_context().new_page()
            customer.goto(f"{url}/")
            for text, reply in ((FAQ, "Source: When your card will arrive"),
                                (OUT_OF_SCOPE, "that's not something I can help with"),
                                (HUMAN, "I'll stay quiet")):
                customer.fill("#text", text)
                customer.click("button[type=submit]")
                expect(customer.locator(".bot", has_text=reply)).to_have_count(1, timeout=60_000)
            number = re.search(r"T-\d{6}", customer.inner_text("#log")).group(0)
            customer.fill("#text", WAITING)  # while a person is on it: recorded, masked, not answered
            customer.click("button[type=submit]")
            wait_for_user_event(bot, customer.evaluate("sessionStorage.getItem('nimbus-chat-session')"),
                                "are you there? my card is [CARD ****1111]")

            # the desk updates by itself: counts, the ticket (masked), latency, the unanswered question
            for decision in ("answer", "decline", "handoff"):
                expect(desk.locator(f"#tile-{decision}")).to_have_attribute("data-count", "1", timeout=30_000)
            card = desk.locator(f"#ticket-{number}")
            expect(card).to_contain_text(HUMAN, timeout=30_000)
            expect(desk.locator("#latency-table")).to_contain_text("action_answer_from_kb")
            expect(desk.locator("#unanswered-list")).to_contain_text(OUT_OF_SCOPE, timeout=90_000)
            expect(desk.locator("#unanswered-list")).not_to_contain_text("talk to a human")  # a request, no question

            # a forged request without the page's CSRF token is refused, the cookie notwithstanding
            forged = desk.evaluate(f"""fetch('/tickets/{number}/reply', {{method: 'POST',
                headers: {{'Content-Type': 'application/json'}}, body: JSON.stringify({{text: 'forged'}})}})
                .then((r) => r.status)""")
            assert forged == 401
            desk.screenshot(path=str(SCREENSHOTS / "desk-laptop.png"), full_page=True)

            # the reply box, from the keyboard: type, Tab to "Send reply", Enter
            box = desk.get_by_label(f"Reply to {number}")
            box.fill("Hi, Sam from the card team here. Your new card is on its way.")
            box.press("Tab")
            desk.keyboard.press("Enter")
            expect(card.get_by_role("status")).to_have_text("Sent: the customer sees it now.", timeout=30_000)
            expect(customer.locator(".bot.agent")).to_have_text(
                "Hi, Sam from the card team here. Your new card is on its way.", timeout=30_000)
            transcript = card.locator("ol.transcript")  # the reply brought the transcript up to date, masked
            expect(transcript).to_contain_text("Customer: are you there? my card is [CARD ****1111]")
            expect(transcript).to_contain_text("Agent: Hi, Sam from the card team here.")
            assert "4111 1111" not in desk.content()

            desk.set_viewport_size({"width": 390, "height": 844})  # a phone
            assert desk.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
            # the chart scrolls sideways instead of shrinking its text, showing the latest hours (next poll)
            # (polled from here: the page's Content-Security-Policy forbids Playwright's wait_for_function eval)
            deadline = time.monotonic() + 15
            while desk.evaluate("document.getElementById('shares-chart').scrollLeft") == 0:
                assert time.monotonic() < deadline, "the phone-width chart does not show its latest end"
                time.sleep(0.5)
            desk.screenshot(path=str(SCREENSHOTS / "desk-phone.png"), full_page=False)
            desk.set_viewport_size({"width": 1366, "height": 900})

            card.get_by_role("button", name="Close ticket").click()
            expect(card).to_have_count(0, timeout=30_000)
            expect(customer.locator(".bot", has_text="chatting with the Nimbus Bank assistant again")).to_have_count(
                1, timeout=30_000)
            expect(desk.locator("#ticket-count")).to_have_text("0", timeout=30_000)
            desk.get_by_role("button", name="Log out").click()
            expect(desk).to_have_url(f"{url}/desk/login")
            assert desk.evaluate("fetch('/desk/data').then((r) => r.status)") == 401
            assert not errors, errors
        finally:
            browser.close()
