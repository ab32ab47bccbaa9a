"""The hand-over on a real ticket store with a stand-in for Rasa's conversation API (the e2e test uses a real one).

The stand-in keeps a tracker's events as Rasa does (append-only) and records what would be sent;
known event lists give known transcripts. Bad input must leave the ticket and the conversation as
they were.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from rasa_sdk.executor import CollectingDispatcher

from apps.customer_service.__main__ import main
from apps.customer_service.actions import ActionHandoff
from apps.customer_service.handover import (
    MAX_REPLY_CHARS,
    Handover,
    ReplyError,
    handover_event,
    tracker_turns,
)
from apps.customer_service.launch import free_port
from apps.customer_service.rasa_api import RasaApiError, RasaConversations
from apps.customer_service.staff_api import error_status, is_staff_path
from apps.customer_service.tickets import TicketClosedError, TicketNotFoundError, TicketStore

from .test_actions import tracker

BEFORE = [{"event": "user", "text": "my card 4111 1111 1111 1111 is blocked"}, {"event": "action", "name": "x"},
          {"event": "bot", "text": "Your ticket number is T-000001."}, {"event": "pause"}]


class FakeRasa:
    """Rasa's tracker API for one process: events per conversation, and what was appended."""

    def __init__(self, channel: str = "socketio") -> None:
        self.events: dict[str, list[dict]] = {}
        self.appended: list[tuple[str, list[dict]]] = []
        self.channel = channel

    def tracker(self, sender_id: str) -> dict:
        return {"events": list(self.events.get(sender_id, []))}

    def append(self, sender_id: str, events: list[dict]) -> dict:
        self.appended.append((sender_id, events))
        self.events.setdefault(sender_id, []).extend(events)
        return {"latest_input_channel": self.channel, "paused": not any(e["event"] == "resume" for e in events)}


@pytest.fixture
def parts(tmp_path: Path) -> tuple[Handover, FakeRasa, int]:
    store, rasa = TicketStore(tmp_path / "tickets.sqlite3"), FakeRasa()
    ticket = store.create("cust-1", "customer asked for a person", [{"speaker": "user", "text": "talk to a person"}])
    rasa.events["cust-1"] = list(BEFORE)
    return Handover(store, rasa), rasa, ticket.id


def test_tracker_turns_start_after_the_hand_off_and_name_the_agent() -> None:
    agent = handover_event("Hello, this is Sam.", _ticket(), "agent")
    events = [*BEFORE, {"event": "user", "text": "are you there?"}, {"event": "slot", "name": "a"}, agent,
              {"event": "resume"}, handover_event("The bot is back.", _ticket(), "bot")]
    turns, cursor = tracker_turns(events, None)
    assert turns == [{"speaker": "user", "text": "are you there?"}, {"speaker": "agent", "text": "Hello, this is Sam."},
                     {"speaker": "bot", "text": "The bot is back."}]
    assert cursor == len(events)
    assert tracker_turns(events, cursor) == ([], cursor)  # read once: nothing twice
    assert tracker_turns(events, 5) == (turns[1:], len(events))
    assert tracker_turns([{"event": "user", "text": "hi"}], None) == ([], 1)  # no hand-off in it: nothing


def test_reply_reaches_the_conversation_and_the_transcript_masked(parts) -> None:
    handover, rasa, ticket_id = parts
    rasa.events["cust-1"].append({"event": "user", "text": "I'm still waiting, mail me at jane@example.com"})
    outcome = handover.reply(ticket_id, "  Hi, I'm Sam. Is 4111 1111 1111 1111 your card?  ")
    assert outcome.channel == "socketio" and outcome.pushed
    sent = rasa.appended[0][1][0]
    assert sent["event"] == "bot" and sent["text"] == "Hi, I'm Sam. Is [CARD ****1111] your card?"
    assert sent["data"]["custom"]["handover"] == {"ticket": "T-000001", "from": "agent", "status": "open"}
    assert outcome.ticket.transcript == [
        {"speaker": "user", "text": "talk to a person"},
        {"speaker": "user", "text": "I'm still waiting, mail me at [EMAIL]"},
        {"speaker": "agent", "text": "Hi, I'm Sam. Is [CARD ****1111] your card?"}]
    rasa.events["cust-1"].append({"event": "user", "text": "yes it is"})
    shown = handover.show(ticket_id)
    assert shown.transcript[-1] == {"speaker": "user", "text": "yes it is"} and len(shown.transcript) == 4
    assert handover.show(ticket_id).transcript == shown.transcript  # shown twice: copied once


def test_close_resumes_the_conversation_and_says_the_bot_is_back(parts) -> None:
    handover, rasa, ticket_id = parts
    outcome = handover.close(ticket_id)
    resume, back, listen = rasa.appended[0][1]
    assert resume == {"event": "resume"} and "You're chatting with the Nimbus Bank assistant again" in back["text"]
    assert listen == {"event": "action", "name": "action_listen"}  # rules match "listen, then the intent"
    assert outcome.ticket.status == "closed" and outcome.ticket.closed_at
    assert outcome.ticket.transcript[-1] == {"speaker": "bot", "text": back["text"]}
    with pytest.raises(TicketClosedError, match="ticket T-000001 is closed; only an open ticket"):
        handover.close(ticket_id)
    with pytest.raises(TicketClosedError, match="is closed"):
        handover.reply(ticket_id, "one more thing")
    assert len(rasa.appended) == 1


@pytest.mark.parametrize(("text", "message"), [
    ("", "the reply is empty"), ("  \n ", "the reply is empty"), (None, "the reply is NoneType; expected text"),
    ("x" * (MAX_REPLY_CHARS + 1), f"the reply has {MAX_REPLY_CHARS + 1} characters; expected at most"),
])
def test_a_bad_reply_changes_nothing(parts, text, message) -> None:
    handover, rasa, ticket_id = parts
    before = handover.tickets.get(ticket_id)
    with pytest.raises(ReplyError, match=message):
        handover.reply(ticket_id, text)
    assert rasa.appended == [] and handover.tickets.get(ticket_id) == before


def test_unknown_ticket_and_unreachable_rasa_change_nothing(parts, tmp_path: Path) -> None:
    handover, rasa, ticket_id = parts
    with pytest.raises(TicketNotFoundError, match="no ticket with id 99"):
        handover.reply(99, "hello")
    before = handover.tickets.get(ticket_id)
    down = Handover(handover.tickets, RasaConversations(f"http://127.0.0.1:{free_port()}", "t" * 20, timeout=2))
    for step in (lambda: down.reply(ticket_id, "hello"), lambda: down.close(ticket_id)):
        with pytest.raises(RasaApiError, match="is not reachable.*python -m apps.customer_service rasa"):
            step()
    assert handover.tickets.get(ticket_id) == before and before.status == "open"


def test_the_hand_off_pauses_the_conversation_and_says_so(tmp_path: Path) -> None:
    dispatcher = CollectingDispatcher()
    events = asyncio.run(ActionHandoff(TicketStore(tmp_path / "t.sqlite3")).run(
        dispatcher, tracker("talk to a person", intent="human_handoff"), {}))
    assert {"event": "pause", "timestamp": None} in events
    assert "I'll stay quiet from now on: a person will answer you right here" in dispatcher.messages[0]["text"]


def test_staff_api_paths_and_statuses() -> None:
    assert is_staff_path("/tickets") and is_staff_path("/tickets/7/reply")
    assert not is_staff_path("/ticketsx") and not is_staff_path("/webhook")
    assert [error_status(e) for e in (TicketNotFoundError("x"), TicketClosedError("x"), ReplyError("x"),
                                      RasaApiError("x"))] == [404, 409, 422, 502]


def test_cli_show_reply_close(parts, tmp_path: Path, capsys: pytest.CaptureFixture,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    handover, rasa, ticket_id = parts
    monkeypatch.setattr("apps.customer_service.handover.handover_for", lambda settings: handover)
    rasa.events["cust-1"].append({"event": "user", "text": "hello? +44 20 7946 0958"})
    assert main(["tickets", "show", "T-000001"]) == 0
    out = capsys.readouterr().out
    assert "T-000001  open  cust-1" in out and "user: hello? [PHONE]" in out
    assert main(["tickets", "reply", "1", "Sam here: your refund is on its way."]) == 0
    assert "T-000001: sent to the customer's socketio chat" in capsys.readouterr().out
    assert main(["tickets", "reply", "1", "   "]) == 2
    assert "error: the reply is empty" in capsys.readouterr().err
    assert main(["tickets", "reply", "T-9", "hello"]) == 2
    assert "error: no ticket with id 9" in capsys.readouterr().err
    assert main(["tickets", "show", "ticket-one"]) == 2
    assert "'ticket-one' is not a ticket id; expected a number such as 42" in capsys.readouterr().err
    rasa.channel = "rest"
    assert main(["tickets", "--json", "close", "1"]) == 0
    out = capsys.readouterr().out
    assert '"status": "closed"' in out and '"pushed": false' in out
    assert main(["tickets", "close", "1"]) == 2
    assert "ticket T-000001 is closed" in capsys.readouterr().err


def test_cli_show_without_rasa_shows_the_stored_ticket(parts, capsys: pytest.CaptureFixture,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    handover, _, _ = parts
    down = Handover(handover.tickets, RasaConversations(f"http://127.0.0.1:{free_port()}", "t" * 20, timeout=2))
    monkeypatch.setattr("apps.customer_service.handover.handover_for", lambda settings: down)
    assert main(["tickets", "show", "1"]) == 0
    captured = capsys.readouterr()
    assert "user: talk to a person" in captured.out
    assert "is not reachable" in captured.err and "without the customer's latest messages" in captured.err


def _ticket():
    from apps.customer_service.tickets import Ticket

    return Ticket(1, "2026-01-01T00:00:00Z", "cust-1", "r", "open", [])
