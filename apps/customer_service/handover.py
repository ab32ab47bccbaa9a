"""The hand-over after a hand-off: a person answers the customer, then gives the conversation back to the bot.

The bot's hand-off (``actions.create_handoff``) opens a ticket and pauses the conversation: Rasa
keeps recording what the customer writes but predicts nothing, so the bot stays quiet. From then
on the agent works here, from the CLI (``tickets show|reply|close``) or the action server's staff
endpoints (``staff_api.py``), which share this module:

* ``reply`` masks the agent's text and appends it to the conversation as a ``bot`` event marked
  ``metadata.handover.from = "agent"``; Rasa sends it through the customer's latest channel (the
  web chat's socket.io connection shows it at once; see ``rasa_api.py``);
* ``close`` appends ``resume``, a message saying the bot is back and ``action_listen``, then closes
  the ticket: the bot answers the customer's next message again;
* every call first copies the conversation's new turns into the ticket (``sync``): what the
  customer wrote after the hand-off, the agent's replies and the bot-is-back message, masked. The
  tracker is the one record of what was said; the ticket keeps a masked copy and a cursor (how
  many tracker events it has read), so the transcript survives the tracker store's retention.

Bad input changes nothing: an empty or too long reply, an unknown or closed ticket raise before
anything is sent; when Rasa cannot be reached the ticket stays as it was (and open).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from apps.customer_service.masking import mask_pii
from apps.customer_service.rasa_api import RasaConversations
from apps.customer_service.settings import BotSettings
from apps.customer_service.tickets import Ticket, TicketStore
from apps.customer_service.tokens import rasa_token

log = logging.getLogger(__name__)
MAX_REPLY_CHARS = 2000  # the web chat's input allows 1000; agents may write more, not a novel
PUSH_CHANNELS = frozenset({"socketio"})  # channels that show a message the customer did not ask for
BOT_BACK = ("Our team has closed ticket {number}. You're chatting with the Nimbus Bank assistant again: ask me "
            "anything about your account, cards, transfers or fees.")


class ReplyError(ValueError):
    """An agent's reply that cannot be sent (not text, empty, too long)."""


@dataclass(frozen=True)
class Outcome:
    """A ticket after a hand-over step, and where its message went.

    ``channel``: the customer's latest input channel (``socketio``, ``rest``...; None when nothing
    was sent); ``pushed``: whether that channel shows the message now (a REST client sees it only
    in the conversation's tracker).
    """

    ticket: Ticket
    channel: str | None = None

    @property
    def pushed(self) -> bool:
        return self.channel in PUSH_CHANNELS


def reply_text(text: object) -> str:
    """The agent's text as it will be sent: stripped and masked; empty or over MAX_REPLY_CHARS raises."""
    if not isinstance(text, str):
        raise ReplyError(f"the reply is {type(text).__name__}; expected text")
    text = text.strip()
    if not text:
        raise ReplyError("the reply is empty; expected the text to send the customer, e.g. "
                         "`tickets reply 42 \"Your refund is on its way.\"`")
    if len(text) > MAX_REPLY_CHARS:
        raise ReplyError(f"the reply has {len(text)} characters; expected at most {MAX_REPLY_CHARS}: send it in parts")
    return mask_pii(text)


def handover_event(text: str, ticket: Ticket, speaker: str) -> dict:
    """A ``bot`` event with ``text`` from ``speaker`` (``agent`` or ``bot``) about ``ticket``.

    ``data.custom`` reaches the web chat (it labels a person's message and shows whether a person is
    on the conversation); ``metadata`` stays in the tracker, where ``tracker_turns`` reads the speaker.
    """
    marker = {"ticket": ticket.number, "from": speaker, "status": "closed" if speaker == "bot" else "open"}
    return {"event": "bot", "text": text, "data": {"custom": {"handover": marker}}, "metadata": {"handover": marker}}


def tracker_turns(events: list[dict], cursor: int | None) -> tuple[list[dict], int]:
    """The transcript turns in ``events[cursor:]`` and the new cursor (``len(events)``).

    ``cursor`` None (a ticket not read yet): start after the last ``pause``, the hand-off that
    opened the ticket (the conversation before it is in the ticket already). ``bot`` events marked
    as the agent's are the agent's turns.
    """
    if cursor is None:
        pauses = [i for i, event in enumerate(events) if event.get("event") == "pause"]
        cursor = pauses[-1] + 1 if pauses else len(events)
    turns = []
    for event in events[cursor:]:
        kind, text = event.get("event"), event.get("text")
        if kind not in ("user", "bot") or not isinstance(text, str) or not text:
            continue
        marker = (event.get("metadata") or {}).get("handover") or {}
        turns.append({"speaker": "agent" if kind == "bot" and marker.get("from") == "agent" else kind, "text": text})
    return turns, max(cursor, len(events))


class Handover:
    """Show, answer and close tickets; ``conversations`` is the Rasa API (``RasaConversations`` or a fake)."""

    def __init__(self, tickets: TicketStore, conversations: RasaConversations) -> None:
        self.tickets = tickets
        self.conversations = conversations

    def sync(self, ticket: Ticket) -> Ticket:
        """``ticket`` with the conversation's new turns copied in (an open ticket; a closed one as it is)."""
        if ticket.status != "open":
            return ticket
        events = self.conversations.tracker(ticket.sender_id).get("events") or []
        turns, cursor = tracker_turns(events, ticket.tracker_cursor)
        return self.tickets.extend(ticket.id, turns, ticket.tracker_cursor, cursor)

    def show(self, ticket_id: int) -> Ticket:
        """The ticket with its transcript up to now (Rasa must be reachable for an open one)."""
        return self.sync(self.tickets.get(ticket_id))

    def reply(self, ticket_id: int, text: object) -> Outcome:
        """Send the agent's ``text`` to the customer and record it in the ticket."""
        masked = reply_text(text)
        ticket = self.tickets.get_open(ticket_id)
        state = self.conversations.append(ticket.sender_id, [handover_event(masked, ticket, "agent")])
        log.info("agent reply on %s sent to %s over %s", ticket.number, ticket.sender_id,
                 state.get("latest_input_channel"))
        return Outcome(self.sync(ticket), state.get("latest_input_channel"))

    def close(self, ticket_id: int) -> Outcome:
        """Give the conversation back to the bot (``resume``), tell the customer, close the ticket."""
        ticket = self.tickets.get_open(ticket_id)
        back = handover_event(BOT_BACK.format(number=ticket.number), ticket, "bot")
        # action_listen: while paused, Rasa logged the customer's messages without one, and rules match
        # only "listen, then the customer's intent": without it the next question gets the core fallback
        listen = {"event": "action", "name": "action_listen"}
        state = self.conversations.append(ticket.sender_id, [{"event": "resume"}, back, listen])
        self.sync(ticket)
        log.info("%s closed: the bot is back in %s", ticket.number, ticket.sender_id)
        return Outcome(self.tickets.close(ticket.id), state.get("latest_input_channel"))


def handover_for(settings: BotSettings) -> Handover:
    """The hand-over on the configured ticket store and Rasa server (its API token from ``tokens.py``)."""
    return Handover(TicketStore(settings.tickets_db), RasaConversations(settings.rasa_url, rasa_token(settings)))
