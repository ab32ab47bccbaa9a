"""The bot's custom actions (rasa-sdk): answer from the knowledge base, decline, rephrase, hand off, the lost-card form.

The fallback has two stages. A message the bot cannot place (a rephrase prompt with the likeliest
topics, or a clarifying question from retrieval) is a failed attempt; a second failed attempt in a
row hands off to a person. Clearly out-of-scope messages are declined with what the bot can do,
which is no failure of the bot's and opens no ticket; an answer resets the count.

Each action is an instance built with its collaborators (retriever, ticket store, decision
recorder), so the action server (``action_server.py``) loads the models once and tests pass
small real ones. The action names are a contract: other tools read trackers by
``action_answer_from_kb`` and ``action_handoff``. Every decision on a customer's message
(answer, clarify, decline, hand-off, unavailable) goes to the recorder: the metrics count it,
the event log keeps it with the masked text (``events.py``).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import ConversationPaused, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from apps.customer_service.events import Decision
from apps.customer_service.kb_index import KbIndexError
from apps.customer_service.masking import has_masked_number, mask_pii
from apps.customer_service.recorder import DecisionRecorder
from apps.customer_service.retrieval import IndexHolder, Retriever
from apps.customer_service.tickets import TicketStore

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 2000
FAILED_ATTEMPTS = "failed_attempts"  # slot: clarifying questions and rephrase prompts in a row
NOT_TOPICS = {"out_of_scope", "unsure_scope", "nlu_fallback"}  # ranking entries that name no banking topic
REPHRASE_TOPICS = 3
CANNOT_ANSWER = ("I can't look that up right now. I can pass you to a member of our team instead: "
                 "just say \"talk to a person\".")


def transcript(tracker: Tracker) -> list[dict]:
    """The conversation so far as ``[{"speaker": "user"|"bot", "text": ...}]`` (user texts arrive masked by
    Rasa's channels; the ticket store masks every text again)."""
    turns = []
    for event in tracker.events:
        if event.get("event") in ("user", "bot") and event.get("text"):
            turns.append({"speaker": event["event"], "text": str(event["text"])})
    return turns


def latest_text(tracker: Tracker) -> str:
    text = tracker.latest_message.get("text")
    return text.strip()[:MAX_MESSAGE_CHARS] if isinstance(text, str) else ""


def intent_name(tracker: Tracker) -> str | None:
    """The latest message's intent name (``nlu_fallback`` when Rasa's FallbackClassifier stepped in)."""
    intent = tracker.latest_message.get("intent")
    name = intent.get("name") if isinstance(intent, dict) else None
    return name if isinstance(name, str) and name else None


def intent_ranking(tracker: Tracker) -> dict[str, float]:
    """The latest message's intent ranking as intent -> confidence (for intent fusion in retrieval).

    ``nlu_fallback`` (FallbackClassifier's threshold, not a probability) and entries that are not a
    name with a confidence in [0, 1] are skipped: a malformed ranking never stops the answer.
    """
    ranking = tracker.latest_message.get("intent_ranking") or []
    scores: dict[str, float] = {}
    for entry in ranking if isinstance(ranking, list) else []:
        name = entry.get("name") if isinstance(entry, dict) else None
        confidence = entry.get("confidence") if isinstance(entry, dict) else None
        numeric = isinstance(confidence, int | float) and not isinstance(confidence, bool)
        if isinstance(name, str) and name != "nlu_fallback" and numeric and 0.0 <= confidence <= 1.0:
            scores.setdefault(name, float(confidence))
    return scores


def create_handoff(dispatcher: CollectingDispatcher, tracker: Tracker, tickets: TicketStore, reason: str,
                   recorder: DecisionRecorder, code: str, confidence: float | None = None) -> list[dict[str, Any]]:
    """Open a ticket with the masked transcript, record the hand-off (reason ``code``), tell the customer
    the ticket's number, and pause the conversation.

    Paused, Rasa records the customer's messages but predicts nothing, so the bot stays quiet until
    the ticket is closed (``handover.py``) and a person answers in the same chat. The message says so:
    silence without it reads as a broken bot.
    """
    ticket = tickets.create(tracker.sender_id, reason, transcript(tracker))
    recorder.record(Decision("handoff", latest_text(tracker), intent_name(tracker), code, confidence))
    log.info("hand-off for %s: ticket %s (%s)", tracker.sender_id, ticket.number, ticket.reason)
    dispatcher.utter_message(
        text=(f"I've passed our conversation to a member of our team. Your ticket number is {ticket.number}. "
              "I'll stay quiet from now on: a person will answer you right here, and anything you add "
              "meanwhile goes into the ticket."),
        json_message={"handoff": {"ticket": ticket.number, "reason": ticket.reason}})
    return [SlotSet("ticket_id", ticket.number), SlotSet(FAILED_ATTEMPTS, 0.0), ConversationPaused()]


class ActionAnswerFromKb(Action):
    """Retrieve, re-rank and answer with a cited passage; clarify once when unsure; hand off below that.

    The latest message's ``intent_ranking`` goes to the retriever, which fuses it in when tuned to.
    """

    def __init__(self, retriever: Retriever, tickets: TicketStore, recorder: DecisionRecorder | None = None) -> None:
        self.retriever = retriever
        self.tickets = tickets
        self.recorder = recorder or DecisionRecorder()

    def name(self) -> str:
        return "action_answer_from_kb"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict[str, Any]]:
        question = latest_text(tracker)
        if not question:
            dispatcher.utter_message(text="Could you type your question? I didn't get any text.")
            return []
        try:
            answer = self.retriever.answer(question, intent_scores=intent_ranking(tracker) or None)
        except (KbIndexError, OSError, RuntimeError, ValueError):
            log.exception("knowledge-base lookup failed for %r", mask_pii(question))
            self.recorder.record(Decision("unavailable", question, intent_name(tracker)))
            dispatcher.utter_message(text=CANNOT_ANSWER, json_message={"kb": {"decision": "unavailable"}})
            return []
        log.info("kb %s (%.3f) for %r", answer.decision, answer.confidence, mask_pii(question))
        failed = failed_attempts(tracker)
        confidence = float(answer.confidence)
        if answer.decision != "answer" and failed >= 1:
            best = answer.to_dict()["title"]
            return create_handoff(dispatcher, tracker, self.tickets,
                                  f"two failed attempts in a row (best: {best}, confidence {confidence:.2f})",
                                  self.recorder, "two_failed_attempts", confidence)
        if answer.decision == "answer":
            self.recorder.record(Decision("answer", question, intent_name(tracker), confidence=confidence))
            best = answer.best
            dispatcher.utter_message(text=f"{best.chunk.text}\n\nSource: {best.chunk.title}",
                                     json_message={"kb": answer.to_dict()})
            return [SlotSet("kb_source", best.chunk.title), SlotSet(FAILED_ATTEMPTS, 0.0)]
        self.recorder.record(Decision("clarify", question, intent_name(tracker), confidence=confidence))
        if answer.decision == "clarify":
            titles = [hit.chunk.title for hit in answer.hits]
            dispatcher.utter_message(
                text="I want to be sure I answer the right question. Do you mean one of these?",
                buttons=[{"title": title, "payload": title} for title in titles],
                json_message={"kb": answer.to_dict()})
            return [SlotSet(FAILED_ATTEMPTS, failed + 1.0)]
        # nothing close enough in the knowledge base: the first time, ask to rephrase (stage one)
        topics = topic_titles(tracker, self.retriever)
        utter_rephrase(dispatcher, topics, {"kb": answer.to_dict()})
        return [SlotSet(FAILED_ATTEMPTS, failed + 1.0)]


class ActionHandoff(Action):
    """Create a ticket with the transcript and give the customer its number."""

    def __init__(self, tickets: TicketStore, recorder: DecisionRecorder | None = None) -> None:
        self.tickets = tickets
        self.recorder = recorder or DecisionRecorder()

    def name(self) -> str:
        return "action_handoff"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict[str, Any]]:
        intent = intent_name(tracker)
        if intent == "human_handoff":
            return create_handoff(dispatcher, tracker, self.tickets, "customer asked for a person", self.recorder,
                                  "customer_asked")
        return create_handoff(dispatcher, tracker, self.tickets, f"hand-off after intent {intent}", self.recorder,
                              "intent_needs_person")


class ActionDecline(Action):
    """A message that is not about banking: say what the bot can help with (``utter_out_of_scope``).

    No ticket: a person at a bank cannot help with it either, and the count of failed attempts stays.
    """

    def __init__(self, recorder: DecisionRecorder | None = None) -> None:
        self.recorder = recorder or DecisionRecorder()

    def name(self) -> str:
        return "action_decline"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict[str, Any]]:
        scope = tracker.latest_message.get("scope")
        p_out = scope.get("p_out") if isinstance(scope, dict) else None
        self.recorder.record(Decision("decline", latest_text(tracker), intent_name(tracker),
                                      confidence=p_out if isinstance(p_out, int | float) else None))
        dispatcher.utter_message(response="utter_out_of_scope", json_message={"scope": {
            **(scope if isinstance(scope, dict) else {}), "decision": "declined"}})
        return []


class ActionRephrase(Action):
    """Stage one of the fallback for a message the scope model is unsure about: ask to rephrase, offering the
    two or three likeliest topics as buttons. A second failed attempt in a row hands off (stage two)."""

    def __init__(self, retriever: Retriever, tickets: TicketStore, recorder: DecisionRecorder | None = None) -> None:
        self.retriever = retriever
        self.tickets = tickets
        self.recorder = recorder or DecisionRecorder()

    def name(self) -> str:
        return "action_rephrase"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict[str, Any]]:
        scope = tracker.latest_message.get("scope")
        p_out = scope.get("p_out") if isinstance(scope, dict) else None
        p_out = float(p_out) if isinstance(p_out, int | float) else None
        failed = failed_attempts(tracker)
        if failed >= 1:
            return create_handoff(dispatcher, tracker, self.tickets, "two failed attempts in a row (unsure whether "
                                  "the message is a banking question)", self.recorder, "two_failed_attempts", p_out)
        self.recorder.record(Decision("clarify", latest_text(tracker), intent_name(tracker), confidence=p_out))
        utter_rephrase(dispatcher, topic_titles(tracker, self.retriever), {"scope": {
            **(scope if isinstance(scope, dict) else {}), "decision": "rephrase"}})
        return [SlotSet(FAILED_ATTEMPTS, failed + 1.0)]


def failed_attempts(tracker: Tracker) -> float:
    value = tracker.get_slot(FAILED_ATTEMPTS)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def topic_titles(tracker: Tracker, retriever: Retriever, limit: int = REPHRASE_TOPICS) -> list[str]:
    """Knowledge-base titles of the latest message's likeliest banking intents, best first."""
    try:
        index = retriever.index.get() if isinstance(retriever.index, IndexHolder) else retriever.index
    except (KbIndexError, OSError):
        return []
    titles: list[str] = []
    for intent in intent_ranking(tracker):
        if intent in NOT_TOPICS:
            continue
        for chunk_id in index.chunks_of_intent(intent)[:1]:
            title = index.chunks[chunk_id].title
            if title not in titles:
                titles.append(title)
        if len(titles) >= limit:
            break
    return titles


def utter_rephrase(dispatcher: CollectingDispatcher, topics: list[str], details: dict) -> None:
    text = ("I'm not sure I understood. Could you say it another way, with a few more details?"
            + (" Or pick one of these topics:" if topics else ""))
    dispatcher.utter_message(text=text, buttons=[{"title": t, "payload": t} for t in topics],
                             json_message={**details, "rephrase": {"topics": topics}})


class ValidateLostCardForm(FormValidationAction):
    """Checks the lost-card form's slots: four digits, a plausible time, a yes/no confirmation."""

    def name(self) -> str:
        return "validate_lost_card_form"

    def validate_card_last4(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                            domain: dict) -> dict[str, Any]:
        text = str(value or "")
        digits = re.sub(r"\D", "", text)
        # Rasa's channels mask a full card number before it gets here ("[CARD ****1111]", or "[NUMBER]"
        # when it fails the Luhn check): its last four digits must not pass for the answer
        if len(digits) > 4 or has_masked_number(text):
            dispatcher.utter_message(text="Please send only the last four digits. Never share your full card "
                                          "number in a chat.")
            return {"card_last4": None}
        if len(digits) != 4:
            dispatcher.utter_message(text=f"\"{mask_pii(text)[:40]}\" is not four digits. What are the last four "
                                          "digits of the card, e.g. 1234?")
            return {"card_last4": None}
        return {"card_last4": digits}

    def validate_lost_when(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                           domain: dict) -> dict[str, Any]:
        text = str(value or "").strip()
        if not text or len(text) > 100 or not re.search(r"[A-Za-z0-9]", text):
            dispatcher.utter_message(text="When did you lose the card? For example \"this morning\" or \"on 3 May\".")
            return {"lost_when": None}
        return {"lost_when": mask_pii(text)}

    def validate_lost_card_confirm(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                                   domain: dict) -> dict[str, Any]:
        if value not in (True, False):
            dispatcher.utter_message(text="Please answer yes or no: shall I block the card?")
            return {"lost_card_confirm": None}
        return {"lost_card_confirm": value}


class ActionSubmitLostCard(Action):
    """Ends the lost-card form: blocks the card (when confirmed) and clears the form's slots."""

    def name(self) -> str:
        return "action_submit_lost_card"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict[str, Any]]:
        last4, when = tracker.get_slot("card_last4"), tracker.get_slot("lost_when")
        if tracker.get_slot("lost_card_confirm"):
            dispatcher.utter_message(
                text=(f"Done: the card ending {last4} (lost {when}) is blocked and a free replacement is on its "
                      "way to the address in your profile."),
                json_message={"lost_card": {"card_last4": last4, "lost_when": when, "blocked": True}})
        else:
            dispatcher.utter_message(text=f"OK, I have not blocked the card ending {last4}. You can freeze it "
                                          "yourself in the app under Cards at any time.")
        return [SlotSet("card_last4", None), SlotSet("lost_when", None), SlotSet("lost_card_confirm", None)]


def make_actions(retriever: Retriever, tickets: TicketStore, recorder: DecisionRecorder | None = None) -> list[Action]:
    return [ActionAnswerFromKb(retriever, tickets, recorder), ActionHandoff(tickets, recorder),
            ActionDecline(recorder), ActionRephrase(retriever, tickets, recorder), ValidateLostCardForm(),
            ActionSubmitLostCard()]
