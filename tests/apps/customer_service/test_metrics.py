"""The decision counters, the latency histogram and the event log move when the real actions run."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from rasa_sdk.executor import CollectingDispatcher

from apps.customer_service.actions import ActionAnswerFromKb, ActionDecline, ActionHandoff
from apps.customer_service.events import Decision, EventLog
from apps.customer_service.kb_index import KbIndex
from apps.customer_service.metrics import MAX_INTENTS, BotMetrics
from apps.customer_service.recorder import DecisionRecorder
from apps.customer_service.retrieval import IndexHolder, RetrievalConfig, Retriever, Thresholds
from apps.customer_service.tickets import TicketStore

from .test_actions import run, tracker

CARD = "4111 1111 1111 1111"


def value(metrics: BotMetrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


@pytest.fixture
def parts(tmp_path: Path) -> tuple[BotMetrics, EventLog, DecisionRecorder, TicketStore]:
    metrics, events = BotMetrics(), EventLog(tmp_path / "events.sqlite3")
    return metrics, events, DecisionRecorder(events, metrics), TicketStore(tmp_path / "tickets.sqlite3")


def test_counters_and_event_log_move_when_actions_run(small_index: KbIndex, embedder, parts) -> None:
    metrics, events, recorder, tickets = parts
    answer = ActionAnswerFromKb(Retriever(embedder.encode, small_index), tickets, recorder)
    assert value(metrics, "cs_decisions_total", decision="answer") == 0.0  # exported at 0 from the start
    run(answer, tracker("my card still hasn't arrived"))
    run(answer, tracker("what's the capital of France?", intent="nlu_fallback"))
    run(ActionHandoff(tickets, recorder), tracker("talk to a person", intent="human_handoff"))
    messages, _ = run(ActionDecline(recorder), tracker(f"tell me a joke, I paid with {CARD}", intent="out_of_scope"))
    assert messages[0]["response"] == "utter_out_of_scope"

    assert {d: value(metrics, "cs_decisions_total", decision=d) for d in ("answer", "clarify", "decline", "handoff")} \
        == {"answer": 1.0, "clarify": 1.0, "decline": 1.0, "handoff": 1.0}
    assert value(metrics, "cs_handoffs_total", reason="customer_asked") == 1.0
    assert value(metrics, "cs_fallbacks_total") == 1.0
    assert value(metrics, "cs_intent_decisions_total", intent="card_arrival") == 1.0
    assert value(metrics, "cs_intent_decisions_total", intent="out_of_scope") == 1.0

    logged = events.read()
    assert [(d.decision, d.intent, d.reason) for d in logged] == [
        ("answer", "card_arrival", None), ("clarify", "nlu_fallback", None),
        ("handoff", "human_handoff", "customer_asked"), ("decline", "out_of_scope", None)]
    assert logged[3].text == "tell me a joke, I paid with [CARD ****1111]"
    assert 0.0 <= logged[0].confidence <= 1.0
    with sqlite3.connect(events.path) as db:  # the file itself: masked only
        stored = " ".join(str(v) for row in db.execute("SELECT * FROM decisions") for v in row)
    assert "4111" not in stored.replace("****1111", "")

    body, content_type = metrics.render()
    text = body.decode()
    assert content_type.startswith("text/plain") and 'cs_decisions_total{decision="handoff"} 1.0' in text
    assert "capital" not in text and "joke" not in text and "1111" not in text  # counters, never message text


def test_clarify_then_unsure_hand_off_are_counted(small_index: KbIndex, embedder, parts) -> None:
    metrics, events, recorder, tickets = parts
    config = replace(RetrievalConfig(), cosine=Thresholds(answer=0.999, clarify=0.0))
    action = ActionAnswerFromKb(Retriever(embedder.encode, small_index, config=config), tickets, recorder)
    run(action, tracker("card please"))
    run(action, tracker("card please", slots={"failed_attempts": 1.0}))
    assert value(metrics, "cs_decisions_total", decision="clarify") == 1.0
    assert value(metrics, "cs_handoffs_total", reason="two_failed_attempts") == 1.0
    assert [d.decision for d in events.read()] == ["clarify", "handoff"]


def test_unavailable_index_is_counted(tmp_path: Path, embedder, parts) -> None:
    metrics, events, recorder, tickets = parts
    action = ActionAnswerFromKb(Retriever(embedder.encode, IndexHolder(tmp_path / "none")), tickets, recorder)
    run(action, tracker("where is my card?"))
    assert value(metrics, "cs_decisions_total", decision="unavailable") == 1.0
    assert events.read()[0].decision == "unavailable"


def test_latency_histogram_and_failures_of_timed_actions(small_index: KbIndex, embedder, parts) -> None:
    metrics, _, recorder, tickets = parts
    answer = ActionAnswerFromKb(Retriever(embedder.encode, small_index), tickets, recorder)
    timed = metrics.timed(answer.name(), answer.run)
    assert value(metrics, "cs_action_seconds_count", action="action_answer_from_kb") == 0.0
    asyncio.run(timed(CollectingDispatcher(), tracker("I lost my card"), {}))
    assert value(metrics, "cs_action_seconds_count", action="action_answer_from_kb") == 1.0
    assert value(metrics, "cs_action_seconds_sum", action="action_answer_from_kb") > 0.0

    async def broken(dispatcher, tracker, domain):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        asyncio.run(metrics.timed("action_broken", broken)(CollectingDispatcher(), tracker("x"), {}))
    assert value(metrics, "cs_action_failures_total", action="action_broken") == 1.0
    assert value(metrics, "cs_action_seconds_count", action="action_broken") == 1.0


def test_intent_labels_stay_few_and_never_carry_text() -> None:
    metrics = BotMetrics()
    metrics.observe(Decision("decline", "hi", intent="my card 4111 is lost"))  # not an intent name
    metrics.observe(Decision("decline", "hi", intent=None))
    assert value(metrics, "cs_intent_decisions_total", intent="other") == 1.0
    assert value(metrics, "cs_intent_decisions_total", intent="none") == 1.0
    for i in range(MAX_INTENTS + 5):
        metrics.observe(Decision("answer", "q", intent=f"made_up_{i}"))
    intents = {s.labels["intent"] for s in metrics.intents.collect()[0].samples if s.name.endswith("_total")}
    assert len(intents) == MAX_INTENTS + 2  # the first MAX_INTENTS names, "other" and "none"
    assert value(metrics, "cs_intent_decisions_total", intent="other") == 6.0


def test_a_broken_event_log_never_stops_the_reply(small_index: KbIndex, embedder, tmp_path: Path) -> None:
    (tmp_path / "events.sqlite3").mkdir()  # a folder where the database file should be
    metrics = BotMetrics()
    recorder = DecisionRecorder(EventLog(tmp_path / "events.sqlite3"), metrics)
    action = ActionAnswerFromKb(Retriever(embedder.encode, small_index), TicketStore(tmp_path / "t.sqlite3"),
                                recorder)
    messages, _ = run(action, tracker("my card still hasn't arrived"))
    assert messages[0]["text"].endswith("Source: When your card will arrive")
    assert value(metrics, "cs_decisions_total", decision="answer") == 1.0
