"""The processor's local state store (SQLite), backed by the compacted changelog topic.

Each processor has its own file (``--db``, default ``$TEXTML_VAR_DIR/finance_monitor/alerts.db``;
no two processors share one, see ``instance.StoreLock``). It holds, per input partition the
processor owns or has owned: the window events, each ticker's watermark and cooldowns, the message
ids seen, the applied mark (checkpoint), and the alert history with its webhook outbox. Every
change is also a changelog record (``changelog.py``), so a partition's state can move to any
processor on any host.

A batch, with the stream's Kafka transaction around it::

    changes = store.stage_batch(result, ...)   # SQLite transaction opened, the batch applied, not committed
    ... send outputs and ``changes`` to Kafka, send the offsets, commit the Kafka transaction ...
    store.commit(changelog_offsets)            # SQLite commits, with the changelog offset it now reflects
    (on any failure: store.rollback())

So the local store is never ahead of the changelog: it is at the committed state, or behind it when
the process died between the two commits, and then the restore reads the changelog's tail from the
local position (:meth:`changelog_position`) and applies it (:meth:`apply_changelog`). Batch and
restore write the same records through :meth:`_apply`, so a store rebuilt from the changelog equals
the store that wrote it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from apps.finance_monitor.alerts import Alert
from apps.finance_monitor.changelog import Change
from apps.finance_monitor.engine import AlertEngine, BatchResult, Partition, PartitionState
from apps.finance_monitor.windows import Event, TickerWindows


class StaleStateError(RuntimeError):
    """A partition's checkpoint moved on since this processor loaded it (the batch is refused)."""


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
CREATE TABLE IF NOT EXISTS changelog_positions (
    grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL,
    changelog_id TEXT NOT NULL, next_offset INTEGER NOT NULL,   -- the changelog (topic id) and offset applied
    PRIMARY KEY (grp, topic, part)
);
"""
# Columns added after the first release (a history written by an older version gains them, NULL).
ALERT_COLUMNS = {"grp": "TEXT", "topic": "TEXT", "part": "INTEGER", "origin": "INTEGER",
                 "logged_status": "TEXT"}  # the webhook status last written to the changelog
PARTITION_TABLES = ("window_events", "window_tickers", "checkpoints", "seen_ids", "changelog_positions", "alerts")
_NO_TIME = -1e18  # stands for "never" (-inf is not valid JSON/SQL)


def _finite(value: float) -> float:
    return value if value != float("-inf") else _NO_TIME


def _time(value: float) -> float:
    return value if value > _NO_TIME else float("-inf")


class StateStore:
    """One connection to the processor's SQLite file (open one per thread); ``group`` scopes the rows."""

    def __init__(self, path: str | Path, group: str = "finance-monitor") -> None:
        self.path = Path(path)
        self.group = group
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(alerts)")}
        for name, kind in ALERT_COLUMNS.items():
            if name not in columns:
                self.db.execute(f"ALTER TABLE alerts ADD COLUMN {name} {kind}")
        self.db.execute("CREATE INDEX IF NOT EXISTS alerts_origin ON alerts (grp, topic, part, origin)")

    def close(self) -> None:
        self.db.close()

    # -- the stream's batch ------------------------------------------------------------------

    def stage_batch(self, result: BatchResult, longest_window_s: float, webhook: bool = False,
                    dedup_records: int = 0) -> tuple[list[Alert], dict[Partition, list[Change]]]:
        """Apply a batch inside a SQLite transaction left open; returns its new alerts and changelog records.

        ``webhook``: whether a webhook sink will deliver new alerts (else they are ``disabled``);
        ``dedup_records``: the engine's horizon, beyond which seen ids are forgotten. The caller
        commits (:meth:`commit`) once the Kafka transaction with the changes committed, else rolls back.
        Raises :class:`StaleStateError` (nothing applied) when a partition's checkpoint is no longer the
        one the batch started from.
        """
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for (topic, part), before in result.applied_before.items():
                current = self.checkpoint(topic, part)
                if current != before:
                    raise StaleStateError(f"{topic}[{part}]: the checkpoint is {current}, not {before} as loaded; "
                                          "another writer has moved this partition on")
            changes: dict[Partition, list[Change]] = {}

            def change(partition: Partition, key: tuple, value) -> None:
                self._apply(partition, key, value)
                changes.setdefault(partition, []).append((key, value))

            for partition, ticker, e in result.events:
                change(partition, ("e", ticker, e.seq), event_value(e))
            for (partition, ticker), windows in result.touched.items():
                change(partition, ("t", ticker), ticker_value(windows))
                for (seq,) in self.db.execute(
                        "SELECT seq FROM window_events WHERE grp=? AND topic=? AND part=? AND ticker=? AND ts<=?",
                        (self.group, *partition, ticker, _finite(windows.released[0]) - longest_window_s)).fetchall():
                    change(partition, ("e", ticker, seq), None)  # left the longest window
            for partition, key, offset in result.seen:
                change(partition, ("s", key), offset)
            new: list[Alert] = []
            live = {alert.alert_id for alert in result.alerts}  # the others were raised again by a rebuild
            for alert in result.alerts + result.replayed_alerts:
                partition, origin = result.origins[alert.alert_id]
                if self.db.execute("SELECT 1 FROM alerts WHERE alert_id=?", (alert.alert_id,)).fetchone():
                    continue
                status = "pending" if webhook and alert.alert_id in live else "disabled"
                change(partition, ("a", alert.alert_id),
                       {"alert": alert.to_dict(), "origin": origin, "webhook": status})
                if alert.alert_id in live:
                    new.append(alert)
            for partition, applied in result.applied.items():
                if dedup_records:
                    for (key,) in self.db.execute("SELECT key FROM seen_ids WHERE grp=? AND topic=? AND part=? AND "
                                                  "input_offset<?", (self.group, *partition,
                                                                     applied - dedup_records)).fetchall():
                        change(partition, ("s", key), None)
                change(partition, ("c",), {"applied": applied})
            for partition in result.offsets.keys() | result.applied.keys():  # webhook outcomes since the last batch
                for alert_id, body, origin, status in self.db.execute(
                        "SELECT alert_id, body, origin, webhook_status FROM alerts WHERE grp=? AND topic=? AND part=? "
                        "AND webhook_status IS NOT logged_status", (self.group, *partition)).fetchall():
                    change(partition, ("a", alert_id), {"alert": json.loads(body), "origin": origin, "webhook": status})
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return new, changes

    def commit(self, changelog_id: str, positions: dict[Partition, int]) -> None:
        """Commit the staged batch, recording the changelog offset each partition's rows now reflect."""
        for (topic, part), offset in positions.items():
            self._set_position(topic, part, changelog_id, offset)
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    # -- restore -----------------------------------------------------------------------------

    def changelog_position(self, topic: str, part: int) -> tuple[str, int] | None:
        """(changelog topic id, next changelog offset) the partition's rows reflect; None: nothing restored."""
        return self.db.execute("SELECT changelog_id, next_offset FROM changelog_positions WHERE grp=? AND topic=? "
                               "AND part=?", (self.group, topic, part)).fetchone()

    def apply_changelog(self, topic: str, part: int, changelog_id: str, changes: Iterable[Change],
                        next_offset: int) -> None:
        """Apply changelog records read back from the topic, in one SQLite transaction."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for key, value in changes:
                self._apply((topic, part), key, value, restored=True)
            self._set_position(topic, part, changelog_id, next_offset)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def wipe(self, topic: str, part: int) -> None:
        """Forget a partition's state, alert history included (its changelog is gone or belongs to another topic)."""
        self.db.execute("BEGIN IMMEDIATE")
        for table in PARTITION_TABLES:
            self.db.execute(f"DELETE FROM {table} WHERE grp=? AND topic=? AND part=?", (self.group, topic, part))
        self.db.execute("COMMIT")

    def _set_position(self, topic: str, part: int, changelog_id: str, offset: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO changelog_positions VALUES (?,?,?,?,?)",
                        (self.group, topic, part, changelog_id, offset))

    def _apply(self, partition: Partition, key: tuple, value, restored: bool = False) -> None:
        """Write one changelog record into the tables (``value`` None deletes)."""
        scope = (self.group, *partition)
        kind = key[0]
        if kind == "e" and value is None:
            self.db.execute("DELETE FROM window_events WHERE grp=? AND topic=? AND part=? AND ticker=? AND seq=?",
                            (*scope, key[1], key[2]))
        elif kind == "e":
            self.db.execute("INSERT OR REPLACE INTO window_events VALUES (?,?,?,?,?,?,?,?,?,?)",
                            (*scope, key[1], value["ts"], key[2], value["id"], value["score"],
                             int(value["negative"]), value["text"]))
        elif kind == "t":
            self.db.execute("INSERT OR REPLACE INTO window_tickers VALUES (?,?,?,?,?,?,?,?)",
                            (*scope, key[1], value["max_ts"], value["released_ts"], value["released_seq"],
                             json.dumps(value["last_alert"])))
        elif kind == "s" and value is None:
            self.db.execute("DELETE FROM seen_ids WHERE grp=? AND topic=? AND part=? AND key=?", (*scope, key[1]))
        elif kind == "s":
            self.db.execute("INSERT OR REPLACE INTO seen_ids VALUES (?,?,?,?,?)", (*scope, key[1], value))
        elif kind == "c":
            self.db.execute("INSERT OR REPLACE INTO checkpoints VALUES (?,?,?,?)", (*scope, value["applied"]))
        elif kind == "a":
            alert, status = value["alert"], value["webhook"]
            # A restore does not undo this processor's own delivery (sent/failed beats pending).
            self.db.execute(
                "INSERT INTO alerts (alert_id, ticker, rule, ts, created_at, body, published, webhook_status, grp, "
                "topic, part, origin, logged_status) VALUES (?,?,?,?,?,?,1,?,?,?,?,?,?) ON CONFLICT (alert_id) DO "
                "UPDATE SET logged_status=excluded.logged_status, webhook_status=CASE WHEN ? AND "
                "alerts.webhook_status IN ('sent', 'failed') THEN alerts.webhook_status ELSE excluded.webhook_status "
                "END", (alert["alert_id"], alert["ticker"], alert["rule"], alert["ts"], time.time(), json.dumps(alert),
                        status, *scope, value["origin"], status, restored))

    # -- reading the state -------------------------------------------------------------------

    def alerts_raised(self, redone: dict[Partition, tuple[int, int]]) -> list[dict]:
        """The stored alerts that the records in ``redone`` ((topic, part) -> first and last offset) raised."""
        alerts: list[dict] = []
        for (topic, part), (first, last) in redone.items():
            alerts += [json.loads(body) for (body,) in self.db.execute(
                "SELECT body FROM alerts WHERE grp=? AND topic=? AND part=? AND origin BETWEEN ? AND ? ORDER BY seq",
                (self.group, topic, part, first, last))]
        return alerts

    def checkpoint(self, topic: str, part: int) -> int | None:
        row = self.db.execute("SELECT next_offset FROM checkpoints WHERE grp=? AND topic=? AND part=?",
                              (self.group, topic, part)).fetchone()
        return row[0] if row else None

    def load_partition(self, topic: str, part: int, engine: AlertEngine) -> PartitionState:
        """Rebuild a partition's windows, seen ids and applied mark from its rows."""
        state = PartitionState(applied=self.checkpoint(topic, part))
        state.seen.update(self.db.execute("SELECT key, input_offset FROM seen_ids WHERE grp=? AND topic=? "
                                          "AND part=? ORDER BY input_offset", (self.group, topic, part)))
        for ticker, max_ts, released_ts, released_seq, last_alert in self.db.execute(
                "SELECT ticker, max_ts, released_ts, released_seq, last_alert FROM window_tickers "
                "WHERE grp=? AND topic=? AND part=?", (self.group, topic, part)).fetchall():
            windows = engine.new_ticker_state()
            windows.max_ts = _time(max_ts)
            windows.last_alert = json.loads(last_alert)
            released = (_time(released_ts), released_seq)
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

    # -- the webhook outbox ------------------------------------------------------------------

    def pending_webhooks(self, limit: int = 50) -> list[tuple[dict, int]]:
        """Alerts the webhook has not delivered yet, with the attempts made so far."""
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
        """Alerts in insertion order after ``seq``. Every alert here is committed (the store commits after Kafka);
        ``published_only`` leaves out alerts of a history written before exactly-once that never reached Kafka."""
        where = " AND published=1" if published_only else ""
        return [(s, json.loads(body)) for s, body in self.db.execute(
            f"SELECT seq, body FROM alerts WHERE seq>?{where} ORDER BY seq LIMIT ?", (seq, limit))]

    def last_seq(self) -> int:
        return self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM alerts").fetchone()[0]


def event_value(event: Event) -> dict:
    return {"ts": event.ts, "id": event.id, "score": event.score, "negative": event.negative, "text": event.text}


def ticker_value(windows: TickerWindows) -> dict:
    return {"max_ts": _finite(windows.max_ts), "released_ts": _finite(windows.released[0]),
            "released_seq": windows.released[1], "last_alert": windows.last_alert}
