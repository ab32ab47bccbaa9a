"""The bot's decisions, one row each, in a small SQLite event log under the state folder.

Every time an action decides what to do with a customer's message it records a :class:`Decision`:
what it did (``answer``, ``clarify``, ``decline``, ``handoff``, or ``unavailable`` when the
knowledge base could not be read), the message's intent, the message text **masked**
(``masking.mask_pii``, applied here again whatever the caller passed), when, and for a hand-off
a reason code. ``python -m apps.customer_service report`` reads it back (``report.py``).

Hand-off reasons are a closed set of codes (:data:`HANDOFF_REASONS`): they are Prometheus label
values too, which must stay few. The ticket keeps the longer, human-readable reason.
"""

from __future__ import annotations

import logging
import sqlite3
from contextlib import closing
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from apps.customer_service.masking import mask_pii
from apps.customer_service.sqlite_file import connect

log = logging.getLogger(__name__)

DECISIONS = ("answer", "clarify", "decline", "handoff", "unavailable")
HANDOFF_REASONS = {
    "customer_asked": "the customer asked for a person",
    "two_failed_attempts": "two failed attempts in a row (a clarifying question or a rephrase prompt)",
    "unsure_after_clarifying": "still unsure after a clarifying question",
    "no_confident_answer": "no confident answer in the knowledge base",
    "intent_needs_person": "an intent that a person handles",
    "other": "any other reason",
}
MAX_TEXT_CHARS = 2000
SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          TEXT NOT NULL,      -- UTC, ISO 8601 with microseconds: sorts as text
    decision    TEXT NOT NULL,
    intent      TEXT,
    text        TEXT NOT NULL,      -- masked
    reason      TEXT,               -- a HANDOFF_REASONS code, hand-offs only
    confidence  REAL
);
CREATE INDEX IF NOT EXISTS decisions_at ON decisions (at);
"""


class EventLogError(ValueError):
    """A decision with a value the log does not accept."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """``moment`` in UTC as stored: ``2026-11-29T10:15:00.000000Z`` (naive times are taken as UTC)."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Decision:
    decision: str
    text: str
    intent: str | None = None
    reason: str | None = None
    confidence: float | None = None
    at: datetime = field(default_factory=utc_now)

    def __post_init__(self) -> None:
        if self.decision not in DECISIONS:
            raise EventLogError(f"decision {self.decision!r} is not one of {DECISIONS}")
        if self.reason is not None and self.reason not in HANDOFF_REASONS:
            raise EventLogError(f"hand-off reason {self.reason!r} is not one of {sorted(HANDOFF_REASONS)}; "
                                "add a code to events.HANDOFF_REASONS")
        # masked here, whatever the caller did: the log must never hold raw personal data
        object.__setattr__(self, "text", mask_pii(str(self.text))[:MAX_TEXT_CHARS])

    def to_dict(self) -> dict:
        return {**asdict(self), "at": iso(self.at)}


class EventLog:
    """Decisions in one SQLite file; each call opens its own connection (safe across threads and processes)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        return connect(self.path, SCHEMA)

    def record(self, decision: Decision) -> None:
        with closing(self._connect()) as db, db:
            db.execute("INSERT INTO decisions (at, decision, intent, text, reason, confidence) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       (iso(decision.at), decision.decision, decision.intent, decision.text, decision.reason,
                        decision.confidence))

    def read(self, since: datetime | None = None, until: datetime | None = None) -> list[Decision]:
        """The decisions with ``since <= at < until`` (either bound optional), oldest first."""
        query, args = "SELECT * FROM decisions WHERE 1 = 1", []
        if since is not None:
            query, args = query + " AND at >= ?", [*args, iso(since)]
        if until is not None:
            query, args = query + " AND at < ?", [*args, iso(until)]
        with closing(self._connect()) as db:
            rows = db.execute(query + " ORDER BY at, id", args).fetchall()
        return [Decision(decision=row["decision"], text=row["text"], intent=row["intent"], reason=row["reason"],
                         confidence=row["confidence"],
                         at=datetime.strptime(row["at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC))
                for row in rows]
