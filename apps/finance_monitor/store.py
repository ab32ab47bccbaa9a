"""SQLite: alert history (deduplicated by ``alert_id``), webhook outbox, and window checkpoints.

One transaction per batch writes the batch's window events, each touched ticker's watermark
and cooldowns, the new alerts and the next input offset of every partition in the batch,
before the offsets are committed to Kafka. After a crash the stream seeks to the checkpointed
offset, so nothing is counted twice in a window; a rebalance hands a partition to a new
owner that rebuilds the windows from these rows (the processors of a group share this file).
Alerts are an outbox: ``published`` and ``webhook_status`` say which sinks still need them.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from apps.finance_monitor.alerts import Alert
from apps.finance_monitor.engine import AlertEngine, BatchResult, PartitionState
from apps.finance_monitor.windows import Event

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL UNIQUE,
    ticker TEXT NOT NULL, rule TEXT NOT NULL, ts TEXT NOT NULL, created_at REAL NOT NULL,
    body TEXT NOT NULL,
    published INTEGER NOT NULL DEFAULT 0,
    webhook_status TEXT NOT NULL DEFAULT 'pending',   -- pending | sent | failed | disabled
    webhook_attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS webhook_failures (
    id INTEGER PRIMARY KEY AUTOINCREMENT, alert_id TEXT NOT NULL, at REAL NOT NULL, attempt INTEGER NOT NULL,
    error TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS window_events (
    grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL, ticker TEXT NOT NULL,
    ts REAL NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, score REAL NOT NULL, negative INTEGER NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (grp, topic, part, ticker, seq)
);
CREATE INDEX IF NOT EXISTS window_events_ts ON window_events (grp, topic, part, ticker, ts);
CREATE TABLE IF NOT EXISTS window_tickers (
    grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL, ticker TEXT NOT NULL,
    max_ts REAL NOT NULL, released_ts REAL NOT NULL, released_seq INTEGER NOT NULL, last_alert TEXT NOT NULL,
    PRIMARY KEY (grp, topic, part, ticker)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, part)
);
"""
_NO_TIME = -1e18  # stands for "never" (-inf is not valid JSON/SQL)


def _finite(value: float) -> float:
    return value if value != float("-inf") else _NO_TIME


class AlertStore:
    """One connection to the SQLite file (open one per thread); ``group`` scopes the checkpoints."""

    def __init__(self, path: str | Path, group: str = "finance-monitor") -> None:
        self.path = Path(path)
        self.group = group
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a committed batch survives a power cut
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    # -- the stream's batch ------------------------------------------------------------------

    def write_batch(self, result: BatchResult, longest_window_s: float, webhook: bool = False) -> list[Alert]:
        """Persist a batch atomically; returns the alerts that are new (not already in the history).

        ``webhook``: whether a webhook sink will deliver the new alerts (else they are marked ``disabled``).
        """
        new: list[Alert] = []
        now = time.time()
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT OR IGNORE INTO window_events VALUES (?,?,?,?,?,?,?,?,?,?)",
                [(self.group, topic, part, ticker, e.ts, e.seq, e.id, e.score, int(e.negative), e.text)
                 for (topic, part), ticker, e in result.events])
            for ((topic, part), ticker), windows in result.touched.items():
                released_ts, released_seq = windows.released
                db.execute("INSERT OR REPLACE INTO window_tickers VALUES (?,?,?,?,?,?,?,?)",
                           (self.group, topic, part, ticker, _finite(windows.max_ts), _finite(released_ts),
                            released_seq, json.dumps(windows.last_alert)))
                db.execute("DELETE FROM window_events WHERE grp=? AND topic=? AND part=? AND ticker=? AND ts<=?",
                           (self.group, topic, part, ticker, _finite(released_ts) - longest_window_s))
            for alert in result.alerts:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO alerts (alert_id, ticker, rule, ts, created_at, body, webhook_status) "
                    "VALUES (?,?,?,?,?,?,?)", (alert.alert_id, alert.ticker, alert.rule, alert.ts, now,
                                               json.dumps(alert.to_dict()), "pending" if webhook else "disabled"))
                if cursor.rowcount:
                    new.append(alert)
            db.executemany("INSERT OR REPLACE INTO checkpoints VALUES (?,?,?,?)",
                           [(self.group, topic, part, offset) for (topic, part), offset in result.offsets.items()])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return new

    def checkpoint(self, topic: str, part: int) -> int | None:
        row = self.db.execute("SELECT next_offset FROM checkpoints WHERE grp=? AND topic=? AND part=?",
                              (self.group, topic, part)).fetchone()
        return row[0] if row else None

    def load_partition(self, topic: str, part: int, engine: AlertEngine) -> PartitionState:
        """Rebuild a partition's windows from its checkpointed events and ticker rows."""
        state = PartitionState()
        for ticker, max_ts, released_ts, released_seq, last_alert in self.db.execute(
                "SELECT ticker, max_ts, released_ts, released_seq, last_alert FROM window_tickers "
                "WHERE grp=? AND topic=? AND part=?", (self.group, topic, part)):
            windows = engine.new_ticker_state()
            windows.max_ts = max_ts if max_ts > _NO_TIME else float("-inf")
            windows.last_alert = json.loads(last_alert)
            released = (released_ts if released_ts > _NO_TIME else float("-inf"), released_seq)
            for ts, seq, ident, score, negative, text in self.db.execute(
                    "SELECT ts, seq, id, score, negative, text FROM window_events "
                    "WHERE grp=? AND topic=? AND part=? AND ticker=? ORDER BY ts, seq",
                    (self.group, topic, part, ticker)):
                event = Event(ts, seq, ident, score, bool(negative), text)
                if event.key <= released:
                    windows.restore_released(event)
                else:
                    windows.restore_buffered(event)
            windows.released = released
            state.tickers[ticker] = windows
        return state

    # -- sinks (outbox) ----------------------------------------------------------------------

    def unpublished(self) -> list[dict]:
        return [json.loads(body) for (body,) in
                self.db.execute("SELECT body FROM alerts WHERE published=0 ORDER BY seq")]

    def mark_published(self, alert_ids: Iterable[str]) -> None:
        self.db.executemany("UPDATE alerts SET published=1 WHERE alert_id=?", [(a,) for a in alert_ids])

    def pending_webhooks(self, limit: int = 50) -> list[tuple[dict, int]]:
        """Alerts the webhook has not delivered yet, with the attempts made so far."""
        return [(json.loads(body), attempts) for body, attempts in self.db.execute(
            "SELECT body, webhook_attempts FROM alerts WHERE webhook_status='pending' ORDER BY seq LIMIT ?",
            (limit,))]

    def record_webhook(self, alert_id: str, status: str, attempts: int, errors: list[str]) -> None:
        now = time.time()
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("UPDATE alerts SET webhook_status=?, webhook_attempts=? WHERE alert_id=?",
                        (status, attempts, alert_id))
        self.db.executemany("INSERT INTO webhook_failures (alert_id, at, attempt, error) VALUES (?,?,?,?)",
                            [(alert_id, now, attempts - len(errors) + i + 1, e) for i, e in enumerate(errors)])
        self.db.execute("COMMIT")

    def webhook_failures(self) -> list[dict]:
        return [{"alert_id": a, "at": at, "attempt": n, "error": e} for a, at, n, e in
                self.db.execute("SELECT alert_id, at, attempt, error FROM webhook_failures ORDER BY id")]

    # -- history -----------------------------------------------------------------------------

    def alerts_after(self, seq: int = 0, limit: int = 1000) -> list[tuple[int, dict]]:
        """Alerts in insertion order after ``seq`` (for `alerts --follow`)."""
        return [(s, json.loads(body)) for s, body in self.db.execute(
            "SELECT seq, body FROM alerts WHERE seq>? ORDER BY seq LIMIT ?", (seq, limit))]

    def last_seq(self) -> int:
        return self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM alerts").fetchone()[0]
