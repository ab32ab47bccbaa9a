"""SQLite: alert history (deduplicated by ``alert_id``), webhook outbox, and window checkpoints.

One transaction per batch writes the batch's window events, each touched ticker's watermark
and cooldowns, the message ids seen, the alerts raised (with the input record that raised
them) and each partition's checkpoint: the next offset applied to this state. It commits
*before* the batch's Kafka transaction, so the checkpoint may run ahead of the group's
committed offset, by at most one batch, when the Kafka transaction then fails or the process dies:

* the stream resumes at the **committed** offset and redoes the records up to the checkpoint
  for their outputs only (the engine skips them for the state; their alerts are read back here by
  :meth:`AlertStore.alerts_raised`), so no window counts a record twice and every output becomes
  visible exactly once;
* the checkpoint only moves forward, and only from the value the writer loaded: a processor whose
  partition was taken over meanwhile (shared file, a rebalance mid-batch) fails with
  :class:`StaleStateError` instead of overwriting the new owner's state.

A rebalance hands a partition to a new owner that rebuilds it from these rows (the processors
of a group share this file). ``published`` = known to be in a committed Kafka transaction
(set after the commit, and on assignment for alerts raised below the committed offset); the
history people read (`alerts`) and the webhook take only those.
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


class StaleStateError(RuntimeError):
    """Another processor moved a partition's checkpoint on since this one loaded it."""

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
CREATE TABLE IF NOT EXISTS seen_ids (
    grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL, key TEXT NOT NULL, input_offset INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, part, key)
);
CREATE INDEX IF NOT EXISTS seen_ids_offset ON seen_ids (grp, topic, part, input_offset);
"""
# Columns added after the first release (a history written by an older version gains them, NULL).
ALERT_ORIGIN_COLUMNS = {"grp": "TEXT", "topic": "TEXT", "part": "INTEGER", "origin": "INTEGER"}
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
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(alerts)")}
        for name, kind in ALERT_ORIGIN_COLUMNS.items():
            if name not in columns:
                self.db.execute(f"ALTER TABLE alerts ADD COLUMN {name} {kind}")
        self.db.execute("CREATE INDEX IF NOT EXISTS alerts_origin ON alerts (grp, topic, part, origin)")

    def close(self) -> None:
        self.db.close()

    # -- the stream's batch ------------------------------------------------------------------

    def write_batch(self, result: BatchResult, longest_window_s: float, webhook: bool = False,
                    dedup_records: int = 0) -> list[Alert]:
        """Persist a batch atomically; returns the alerts that are new (not already in the history).

        ``webhook``: whether a webhook sink will deliver the new alerts (else they are marked ``disabled``);
        ``dedup_records``: the engine's horizon, beyond which seen ids are deleted.
        Raises :class:`StaleStateError` (and writes nothing) when a partition's checkpoint is no longer
        the one the batch started from.
        """
        new: list[Alert] = []
        now = time.time()
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            for (topic, part), before in result.applied_before.items():
                current = self.checkpoint(topic, part)
                if current != before:
                    raise StaleStateError(f"{topic}[{part}]: the checkpoint is {current}, not {before} as loaded; "
                                          "another processor has moved this partition on")
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
            db.executemany("INSERT OR REPLACE INTO seen_ids VALUES (?,?,?,?,?)",
                           [(self.group, topic, part, key, offset) for (topic, part), key, offset in result.seen])
            if dedup_records:
                db.executemany("DELETE FROM seen_ids WHERE grp=? AND topic=? AND part=? AND input_offset<?",
                               [(self.group, topic, part, applied - dedup_records)
                                for (topic, part), applied in result.applied.items()])
            for alert in result.alerts:
                (topic, part), origin = result.origins.get(alert.alert_id, ((None, None), None))
                cursor = db.execute(
                    "INSERT OR IGNORE INTO alerts (alert_id, ticker, rule, ts, created_at, body, webhook_status, "
                    "grp, topic, part, origin) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (alert.alert_id, alert.ticker, alert.rule, alert.ts, now, json.dumps(alert.to_dict()),
                     "pending" if webhook else "disabled", self.group, topic, part, origin))
                if cursor.rowcount:
                    new.append(alert)
            db.executemany("INSERT INTO checkpoints VALUES (?,?,?,?) ON CONFLICT (grp, topic, part) "
                           "DO UPDATE SET next_offset = MAX(next_offset, excluded.next_offset)",
                           [(self.group, topic, part, offset) for (topic, part), offset in result.applied.items()])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return new

    def alerts_raised(self, redone: dict[tuple[str, int], tuple[int, int]]) -> list[dict]:
        """The stored alerts that the records in ``redone`` ((topic, part) -> first and last offset) raised."""
        alerts: list[dict] = []
        for (topic, part), (first, last) in redone.items():
            alerts += [json.loads(body) for (body,) in self.db.execute(
                "SELECT body FROM alerts WHERE grp=? AND topic=? AND part=? AND origin BETWEEN ? AND ? ORDER BY seq",
                (self.group, topic, part, first, last))]
        return alerts

    def mark_committed(self, topic: str, part: int, committed: int) -> None:
        """Alerts raised below the group's committed offset were in a committed transaction: mark them published."""
        self.db.execute("UPDATE alerts SET published=1 WHERE grp=? AND topic=? AND part=? AND origin<? "
                        "AND published=0", (self.group, topic, part, committed))

    def checkpoint(self, topic: str, part: int) -> int | None:
        row = self.db.execute("SELECT next_offset FROM checkpoints WHERE grp=? AND topic=? AND part=?",
                              (self.group, topic, part)).fetchone()
        return row[0] if row else None

    def load_partition(self, topic: str, part: int, engine: AlertEngine) -> PartitionState:
        """Rebuild a partition's windows, seen ids and applied mark from its checkpointed rows."""
        state = PartitionState(applied=self.checkpoint(topic, part))
        state.seen.update(self.db.execute("SELECT key, input_offset FROM seen_ids WHERE grp=? AND topic=? "
                                          "AND part=? ORDER BY input_offset", (self.group, topic, part)))
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
        """Published alerts the webhook has not delivered yet, with the attempts made so far."""
        return [(json.loads(body), attempts) for body, attempts in self.db.execute(
            "SELECT body, webhook_attempts FROM alerts WHERE webhook_status='pending' AND published=1 "
            "ORDER BY seq LIMIT ?",
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

    def alerts_after(self, seq: int = 0, limit: int = 1000, published_only: bool = False) -> list[tuple[int, dict]]:
        """Alerts in insertion order after ``seq``; ``published_only``: those known to be committed to Kafka."""
        where = " AND published=1" if published_only else ""
        return [(s, json.loads(body)) for s, body in self.db.execute(
            f"SELECT seq, body FROM alerts WHERE seq>?{where} ORDER BY seq LIMIT ?", (seq, limit))]

    def last_seq(self) -> int:
        return self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM alerts").fetchone()[0]
