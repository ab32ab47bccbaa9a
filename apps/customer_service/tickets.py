"""Hand-off tickets in SQLite: the masked conversation transcript a person reads before taking over."""

from __future__ import annotations

import json
import sqlite3
import time
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
STATUSES = ("open", "closed")


class TicketError(ValueError):
    """A ticket operation with a bad value (unknown id or status)."""


@dataclass(frozen=True)
class Ticket:
    id: int
    created_at: str
    sender_id: str
    reason: str
    status: str
    transcript: list[dict]  # [{"speaker": "user"|"bot", "text": masked text}]

    @property
    def number(self) -> str:
        """What the customer is told: ``T-000042``."""
        return f"T-{self.id:06d}"

    def to_dict(self) -> dict:
        return {"number": self.number, "id": self.id, "created_at": self.created_at, "sender_id": self.sender_id,
                "reason": self.reason, "status": self.status, "transcript": self.transcript}


class TicketStore:
    """Tickets in one SQLite file; each call opens its own connection (safe across threads and processes)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        return connect(self.path, SCHEMA)

    def create(self, sender_id: str, reason: str, transcript: list[dict]) -> Ticket:
        """Store a ticket; every transcript text and the reason are masked before they touch the disk."""
        masked = [{"speaker": str(turn.get("speaker", "?")), "text": mask_pii(str(turn.get("text", "")))}
                  for turn in transcript]
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with closing(self._connect()) as db, db:
            cursor = db.execute(
                "INSERT INTO tickets (created_at, sender_id, reason, transcript) VALUES (?, ?, ?, ?)",
                (created, sender_id, mask_pii(reason), json.dumps(masked, ensure_ascii=False)))
            ticket_id = cursor.lastrowid
        return self.get(ticket_id)

    def get(self, ticket_id: int) -> Ticket:
        with closing(self._connect()) as db:
            row = db.execute("SELECT * FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
        if row is None:
            raise TicketError(f"no ticket with id {ticket_id} in {self.path}; list them with "
                              "`python -m apps.customer_service tickets`")
        return _ticket(row)

    def list(self, status: str | None = "open") -> list[Ticket]:
        """Tickets with ``status`` (None: all), oldest first."""
        if status is not None and status not in STATUSES:
            raise TicketError(f"status {status!r} is not a ticket status; use one of {STATUSES}")
        query, args = ("SELECT * FROM tickets ORDER BY id", ()) if status is None else (
            "SELECT * FROM tickets WHERE status = ? ORDER BY id", (status,))
        with closing(self._connect()) as db:
            return [_ticket(row) for row in db.execute(query, args)]

    def close(self, ticket_id: int) -> Ticket:
        self.get(ticket_id)
        with closing(self._connect()) as db, db:
            db.execute("UPDATE tickets SET status = 'closed' WHERE id = ?", (ticket_id,))
        return self.get(ticket_id)


def _ticket(row: sqlite3.Row) -> Ticket:
    return Ticket(row["id"], row["created_at"], row["sender_id"], row["reason"], row["status"],
                  json.loads(row["transcript"]))
