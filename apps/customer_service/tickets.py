"""Hand-off tickets in SQLite: the masked conversation transcript a person reads and answers from.

A ticket is opened by the bot's hand-off (``actions.create_handoff``) with the conversation so far.
While it is open the bot is paused in that conversation; ``handover.py`` copies what the customer
writes meanwhile and what the agent answers into the transcript (``extend``), and closing it gives
the conversation back to the bot. Every text is masked before it touches the disk.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from apps.customer_service.masking import mask_pii
from apps.customer_service.sqlite_file import connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS tickets (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at  TEXT NOT NULL,
    sender_id   TEXT NOT NULL,
    reason      TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'open',
    transcript  TEXT NOT NULL
)
"""
# added after the first release: ALTERed into older files (see _migrate)
COLUMNS = {"tracker_cursor": "INTEGER", "closed_at": "TEXT"}
STATUSES = ("open", "closed")
SPEAKERS = ("user", "bot", "agent")
TICKET_ID = re.compile(r"(?:T-)?0*(\d{1,12})", re.IGNORECASE)


class TicketError(ValueError):
    """A ticket operation with a bad value (unknown id or status)."""


class TicketNotFoundError(TicketError):
    """No ticket has this id."""


class TicketClosedError(TicketError):
    """The ticket is closed: nothing can be added to it."""


@dataclass(frozen=True)
class Ticket:
    id: int
    created_at: str
    sender_id: str
    reason: str
    status: str
    transcript: list[dict]  # [{"speaker": "user"|"bot"|"agent", "text": masked text}]
    # how many of the conversation's tracker events handover.py has copied; None: none yet
    tracker_cursor: int | None = None
    closed_at: str | None = None

    @property
    def number(self) -> str:
        """What the customer is told: ``T-000042``."""
        return f"T-{self.id:06d}"

    def to_dict(self) -> dict:
        return {"number": self.number, "id": self.id, "created_at": self.created_at, "sender_id": self.sender_id,
                "reason": self.reason, "status": self.status, "closed_at": self.closed_at,
                "transcript": self.transcript}


def parse_ticket_id(value: str | int) -> int:
    """A ticket id from what a person types: ``42``, ``T-000042`` or ``t-42``."""
    match = TICKET_ID.fullmatch(str(value).strip())
    if match is None or int(match.group(1)) < 1:
        raise TicketError(f"{str(value)[:40]!r} is not a ticket id; expected a number such as 42 or a ticket "
                          "number such as T-000042")
    return int(match.group(1))


def masked_turns(turns: Iterable[dict]) -> list[dict]:
    """Turns as stored: a known speaker (else ``"?"``) and the masked text."""
    return [{"speaker": turn.get("speaker") if turn.get("speaker") in SPEAKERS else "?",
             "text": mask_pii(str(turn.get("text", "")))} for turn in turns]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class TicketStore:
    """Tickets in one SQLite file; each call opens its own connection (safe across threads and processes)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        db = connect(self.path, SCHEMA)
        _migrate(db)
        return db

    def create(self, sender_id: str, reason: str, transcript: list[dict]) -> Ticket:
        """Store a ticket; every transcript text and the reason are masked before they touch the disk."""
        with closing(self._connect()) as db, db:
            cursor = db.execute(
                "INSERT INTO tickets (created_at, sender_id, reason, transcript) VALUES (?, ?, ?, ?)",
                (_now(), sender_id, mask_pii(reason), json.dumps(masked_turns(transcript), ensure_ascii=False)))
            ticket_id = cursor.lastrowid
        return self.get(ticket_id)

    def get(self, ticket_id: int) -> Ticket:
        with closing(self._connect()) as db:
            row = db.execute("SELECT * FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
        if row is None:
            raise TicketNotFoundError(f"no ticket with id {ticket_id} in {self.path}; list them with "
                                      "`python -m apps.customer_service tickets`")
        return _ticket(row)

    def get_open(self, ticket_id: int) -> Ticket:
        """The ticket, which must be open (else :class:`TicketClosedError`; unknown: TicketNotFoundError)."""
        with closing(self._connect()) as db:
            return self._open(db, ticket_id)

    def list(self, status: str | None = "open") -> list[Ticket]:
        """Tickets with ``status`` (None: all), oldest first."""
        if status is not None and status not in STATUSES:
            raise TicketError(f"status {status!r} is not a ticket status; use one of {STATUSES}")
        query, args = ("SELECT * FROM tickets ORDER BY id", ()) if status is None else (
            "SELECT * FROM tickets WHERE status = ? ORDER BY id", (status,))
        with closing(self._connect()) as db:
            return [_ticket(row) for row in db.execute(query, args)]

    def extend(self, ticket_id: int, turns: Iterable[dict], since: int | None, until: int) -> Ticket:
        """Add masked ``turns``, read from the conversation's tracker events ``since`` (the ticket's cursor when
        they were read) up to ``until``, to an open ticket's transcript; the cursor moves to ``until``.

        Compare-and-set, in one transaction: when another reader moved the cursor meanwhile (the CLI and the
        action server read the same conversation), its copy stands and these turns are dropped, not doubled.
        """
        turns = masked_turns(turns)
        with closing(self._connect()) as db, db:
            db.execute("BEGIN IMMEDIATE")  # read-modify-write: no other writer in between
            ticket = self._open(db, ticket_id)
            if ticket.tracker_cursor == since:
                db.execute("UPDATE tickets SET transcript = ?, tracker_cursor = ? WHERE id = ?",
                           (json.dumps(ticket.transcript + turns, ensure_ascii=False), until, ticket_id))
        return self.get(ticket_id)

    def close(self, ticket_id: int) -> Ticket:
        """Close an open ticket (a closed one raises :class:`TicketClosedError`, an unknown id TicketNotFoundError)."""
        with closing(self._connect()) as db, db:
            db.execute("BEGIN IMMEDIATE")
            self._open(db, ticket_id)
            db.execute("UPDATE tickets SET status = 'closed', closed_at = ? WHERE id = ?", (_now(), ticket_id))
        return self.get(ticket_id)

    def _open(self, db: sqlite3.Connection, ticket_id: int) -> Ticket:
        row = db.execute("SELECT * FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
        if row is None:
            raise TicketNotFoundError(f"no ticket with id {ticket_id} in {self.path}; list them with "
                                      "`python -m apps.customer_service tickets`")
        ticket = _ticket(row)
        if ticket.status != "open":
            raise TicketClosedError(f"ticket {ticket.number} is {ticket.status}; only an open ticket can be answered "
                                    "or closed (open ones: `python -m apps.customer_service tickets`)")
        return ticket


def _migrate(db: sqlite3.Connection) -> None:
    """Add the columns a ticket file from an older release lacks (another process may add them first)."""
    present = {row["name"] for row in db.execute("PRAGMA table_info(tickets)")}
    for name, kind in COLUMNS.items():
        if name not in present:
            try:
                db.execute(f"ALTER TABLE tickets ADD COLUMN {name} {kind}")
            except sqlite3.OperationalError as error:
                if "duplicate column" not in str(error):
                    raise
    db.commit()


def _ticket(row: sqlite3.Row) -> Ticket:
    return Ticket(row["id"], row["created_at"], row["sender_id"], row["reason"], row["status"],
                  json.loads(row["transcript"]), row["tracker_cursor"], row["closed_at"])
