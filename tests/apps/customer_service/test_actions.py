"""The custom actions on a real small index and a real ticket store, called as the action server calls them."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from apps.customer_service.actions import ActionAnswerFromKb, ActionHandoff, ActionSubmitLostCard, ValidateLostCardForm
from apps.customer_service.kb_index import KbIndex
from apps.customer_service.retrieval import IndexHolder, RetrievalConfig, Retriever, Thresholds
from apps.customer_service.tickets import TicketStore


def tracker(text: str, intent: str = "card_arrival", slots: dict | None = None, history: list[str] = ()) -> Tracker:
    events = [{"event": "user", "text": t} for t in history] + [{"event": "user", "text": text}]
    return Tracker("cust-1", {"failed_attempts": 0.0, **(slots or {})},
                   {"text": text, "intent": {"name": intent, "confidence": 0.9}}, events, False, None, {}, None)


def run(action, track: Tracker) -> tuple[list[dict], list[dict]]:
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, track, {}))
    return dispatcher.messages, events


@pytest.fixture
def tickets(tmp_path: Path) -> TicketStore:
    return TicketStore(tmp_path / "tickets.sqlite3")


def test_answer_cites_its_source(small_index: KbIndex, embedder, tickets: TicketStore) -> None:
    action = ActionAnswerFromKb(Retriever(embedder.encode, small_index), tickets)
    assert action.name() == "action_answer_from_kb"
    messages, events = run(action, tracker("my card still hasn't arrived"))
    assert messages[0]["text"].endswith("Source: When your card will arrive")
    assert messages[0]["custom"]["kb"]["decision"] == "answer"
    assert {"event": "slot", "name": "kb_source", "value": "When your card will arrive", "timestamp": None} in events


def test_unsure_asks_once_then_hands_off(small_index: KbIndex, embedder, tickets: TicketStore) -> None:
    config = replace(RetrievalConfig(), cosine=Thresholds(answer=0.999, clarify=0.0))
    action = ActionAnswerFromKb(Retriever(embedder.encode, small_index, config=config), tickets)
    messages, events = run(action, tracker("card please"))
    assert messages[0]["buttons"] and "Do you mean" in messages[0]["text"]
    assert events[-1]["name"] == "failed_attempts" and events[-1]["value"] == 1.0
    messages, events = run(action, tracker("card please", slots={"failed_attempts": 1.0}))
    assert "T-000001" in messages[0]["text"] and tickets.list()[0].reason.startswith("two failed attempts")


def test_low_confidence_asks_to_rephrase_then_hands_off_with_a_masked_transcript(small_index: KbIndex, embedder,
                                                                                tickets: TicketStore) -> None:
    action = ActionAnswerFromKb(Retriever(embedder.encode, small_index), tickets)
    messages, events = run(action, tracker("what's the capital of France?"))
    assert "say it another way" in messages[0]["text"] and not tickets.list()
    assert events == [{"event": "slot", "name": "failed_attempts", "value": 1.0, "timestamp": None}]
    messages, events = run(action, tracker("what's the capital of France?", slots={"failed_attempts": 1.0},
                                           history=["hi, my card is 4111 1111 1111 1111"]))
    assert "ticket number is T-000001" in messages[0]["text"]
    ticket = tickets.list()[0]
    assert ticket.transcript[0]["text"] == "hi, my card is [CARD ****1111]"
    assert {"event": "slot", "name": "ticket_id", "value": "T-000001", "timestamp": None} in events


def test_missing_index_says_it_cannot_answer(tmp_path: Path, embedder, tickets: TicketStore) -> None:
    action = ActionAnswerFromKb(Retriever(embedder.encode, IndexHolder(tmp_path / "none")), tickets)
    messages, _ = run(action, tracker("where is my card?"))
    assert "can't look that up right now" in messages[0]["text"]
    messages, _ = run(action, tracker("   "))
    assert "didn't get any text" in messages[0]["text"]


def test_handoff_action(tickets: TicketStore) -> None:
    messages, _ = run(ActionHandoff(tickets), tracker("talk to a person", intent="human_handoff"))
    assert "T-000001" in messages[0]["text"] and messages[0]["custom"]["handoff"]["ticket"] == "T-000001"
    assert tickets.list()[0].reason == "customer asked for a person"


def test_lost_card_form_validation() -> None:
    form, dispatcher, track = ValidateLostCardForm(), CollectingDispatcher(), tracker("x")
    assert form.validate_card_last4("1234", dispatcher, track, {}) == {"card_last4": "1234"}
    assert form.validate_card_last4("it ends in 98 76", dispatcher, track, {}) == {"card_last4": "9876"}
    assert form.validate_card_last4("4111 1111 1111 1111", dispatcher, track, {}) == {"card_last4": None}
    assert "Never share your full card number" in dispatcher.messages[-1]["text"]
    assert form.validate_card_last4("12", dispatcher, track, {}) == {"card_last4": None}
    # what the form gets from Rasa's masking channels: the masked number's last four must not pass
    for masked in ("[CARD ****1111]", "it is [CARD ****1111]", "[NUMBER]"):
        assert form.validate_card_last4(masked, dispatcher, track, {}) == {"card_last4": None}
        assert "Please send only the last four digits" in dispatcher.messages[-1]["text"]
    assert form.validate_lost_when("yesterday evening", dispatcher, track, {}) == {"lost_when": "yesterday evening"}
    assert form.validate_lost_when("???", dispatcher, track, {}) == {"lost_when": None}
    assert form.validate_lost_card_confirm(True, dispatcher, track, {}) == {"lost_card_confirm": True}
    assert form.validate_lost_card_confirm("maybe", dispatcher, track, {}) == {"lost_card_confirm": None}


def test_submit_lost_card_blocks_only_when_confirmed() -> None:
    slots = {"card_last4": "1234", "lost_when": "today", "lost_card_confirm": True}
    messages, events = run(ActionSubmitLostCard(), tracker("yes", slots=slots))
    assert "card ending 1234 (lost today) is blocked" in messages[0]["text"]
    assert [e["value"] for e in events] == [None, None, None]
    messages, _ = run(ActionSubmitLostCard(), tracker("no", slots={**slots, "lost_card_confirm": False}))
    assert "have not blocked" in messages[0]["text"]
