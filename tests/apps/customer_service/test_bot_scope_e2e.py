"""End to end with a scope model: the real Rasa server and action server decline, ask to rephrase, hand off.

The scope model is trained here on part of the shared data (BANKING77 train utterances as the in-scope
examples, its dev split and ``clinc150_oos`` train for calibration) with the real MiniLM embedder.
One vague message's thresholds are set around it so that the rephrase path is reached on purpose;
everything else is the model's own decision.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from dataclasses import replace

import pytest

from apps.customer_service.ingest import ingest
from apps.customer_service.launch import actions_ready, free_port, rasa_ready, start_service, stop_service
from apps.customer_service.rasa_project import train
from apps.customer_service.scope import ScopeModel, ScopeThresholds, fit_scope
from apps.customer_service.scope_training import load_scope_data
from apps.customer_service.settings import APP_DIR, REPO_ROOT, BotSettings
from apps.customer_service.tickets import TicketStore
from apps.customer_service.tokens import rasa_token

from .test_bot_e2e import say, texts, wait_for

pytestmark = [pytest.mark.rasa, pytest.mark.slow]
DATASETS = os.environ.get("TEXTML_DATASETS_DIR", str(REPO_ROOT.parent / "shared" / "datasets"))
VAGUE = "can you check that thing for me"
WHAT_IT_CAN_DO = "I can answer questions about your account, cards, payments"


def small_scope_model(embedder) -> ScopeModel:
    data = load_scope_data(DATASETS, APP_DIR / "knowledge")
    rng = random.Random(3)
    reference = rng.sample(data.reference, 2500)  # a sample keeps the test near a minute on 2 cores
    model = fit_scope(embedder.encode, "all-MiniLM-L6-v2", reference, rng.sample(data.dev_in, 300), data.dev_out)
    p_vague = float(model.p_out(model.nearest(embedder.encode([VAGUE])))[0])
    limits = model.card.thresholds  # the vague message lands between the thresholds
    card = replace(model.card, thresholds=ScopeThresholds(decline=max(limits.decline, min(1.0, p_vague + 1e-6)),
                                                          unsure=min(limits.unsure, max(0.0, p_vague - 1e-6))))
    return ScopeModel(card, model.reference)


@pytest.fixture(scope="module")
def bot(tmp_path_factory: pytest.TempPathFactory, embedder) -> Iterator[dict]:
    state = tmp_path_factory.mktemp("bot-scope-state")
    settings = BotSettings(state_dir=state, actions_port=free_port(), rasa_port=free_port())
    env = {**os.environ, "CS_STATE_DIR": str(state), "CS_ACTIONS_PORT": str(settings.actions_port),
           "CS_RASA_PORT": str(settings.rasa_port), "CS_EMBEDDER": "all-MiniLM-L6-v2", "CS_RERANKER": "none",
           "CS_INTENT_MODEL": "retrieval", "HF_HUB_OFFLINE": "1", "TEXTML_NUM_THREADS": "1"}
    env.pop("CS_SCOPE_MODEL", None)
    ingest(APP_DIR / "knowledge", settings.index_dir, "all-MiniLM-L6-v2", embedder=embedder)
    small_scope_model(embedder).save(settings.scope_dir)
    actions_log, rasa_log = state / "actions.log", state / "rasa.log"
    actions = start_service("actions", actions_log, env)
    processes = [actions]
    try:
        train(settings)
        rasa = start_service("rasa", rasa_log, env)
        processes.append(rasa)
        wait_for(lambda: actions_ready(settings.actions_url), actions, actions_log, "action server")
        wait_for(lambda: rasa_ready(settings.rasa_url, rasa_log, rasa_token(settings)), rasa, rasa_log, "Rasa server")
        yield {"settings": settings, "tickets": TicketStore(settings.tickets_db), "actions_log": actions_log}
    finally:
        for process in reversed(processes):
            stop_service(process)


def custom(messages: list[dict], key: str) -> dict | None:
    return next((m["custom"][key] for m in messages if isinstance(m.get("custom"), dict) and key in m["custom"]), None)


def test_the_action_server_serves_the_scope_model(bot: dict) -> None:
    assert "scope model" in bot["actions_log"].read_text() and "detection is off" not in bot["actions_log"].read_text()


@pytest.mark.parametrize("text", ["how many prime numbers are there between 0 and 100",
                                  "can you find my car in the parking lot", "what's the weather like in Lisbon"])
def test_out_of_scope_is_declined_without_a_ticket_or_a_form(bot: dict, text: str) -> None:
    sender = f"oos-{abs(hash(text))}"
    messages = say(bot, sender, text)
    assert WHAT_IT_CAN_DO in texts(messages), messages
    assert custom(messages, "scope")["decision"] == "declined" and custom(messages, "scope")["p_out"] >= 0.5
    assert custom(messages, "handoff") is None and "last four digits" not in texts(messages)
    assert not [t for t in bot["tickets"].list(status=None) if t.sender_id == sender]


def test_a_banking_question_is_still_answered(bot: dict) -> None:
    messages = say(bot, "in-scope-1", "I ordered my card two weeks ago and it still hasn't arrived")
    assert "Source: When your card will arrive" in texts(messages)


def test_unsure_asks_to_rephrase_with_topics_then_hands_off(bot: dict) -> None:
    first = say(bot, "vague-1", VAGUE)
    assert "say it another way" in texts(first) and custom(first, "scope")["decision"] == "rephrase"
    assert 2 <= len(first[0].get("buttons") or []) <= 3, first  # the likeliest topics, as buttons
    assert not [t for t in bot["tickets"].list(status=None) if t.sender_id == "vague-1"]
    second = say(bot, "vague-1", VAGUE)
    handoff = custom(second, "handoff")
    assert handoff is not None, second
    ticket = next(t for t in bot["tickets"].list() if t.sender_id == "vague-1")
    assert ticket.reason.startswith("two failed attempts")


@pytest.mark.parametrize("name, text", [
    ("huge", "my card " + "blah " * 20_000),  # 100 kB
    ("binary", "\x00\x01\x02\x7f\x1b[0m\x00" * 20),
    ("non-English", "¿Cuál es la capital de Australia?"),
    ("symbols", "#### $$$$ 1234 %%%% ^^^^"),
])
def test_bad_input_gets_what_the_bot_can_do_and_no_ticket(bot: dict, name: str, text: str) -> None:
    sender = f"bad-{name}"
    messages = say(bot, sender, text)
    reply = texts(messages)
    assert WHAT_IT_CAN_DO in reply or "say it another way" in reply, (name, messages)
    assert custom(messages, "handoff") is None
    assert not [t for t in bot["tickets"].list(status=None) if t.sender_id == sender]


def test_empty_message_asks_for_text(bot: dict) -> None:
    assert "didn't get any text" in texts(say(bot, "bad-empty", "   "))
