"""The catalog: items and interactions in SQLite, the source of truth the vector index follows.

Every write is one transaction that bumps a change counter (``seq``) and stamps the rows it
touched with it; a deleted item stays as a tombstone row with its own ``seq``. The index
records the ``seq`` it reflects, so after a crash :meth:`Catalog.changes_since` tells it
exactly which items to re-embed or drop. Each item id keeps one int64 surrogate ``key`` for
life (a deleted and re-added id gets its old key back), which is the id FAISS stores.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from apps.recommender.items import Item

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    key INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    tags TEXT NOT NULL,
    category TEXT,
    price REAL,
    available INTEGER NOT NULL,
    attributes TEXT NOT NULL,
    seq INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    added_at REAL
);
CREATE INDEX IF NOT EXISTS items_seq ON items(seq);
CREATE TABLE IF NOT EXISTS interactions (
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    ts REAL,
    weight REAL NOT NULL DEFAULT 1.0
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class CatalogError(ValueError):
    """A catalog operation that cannot be done (bad path, unknown item); the message says why."""


@dataclass(frozen=True)
class StoredItem:
    """An item as stored: its surrogate ``key`` and the ``seq`` of its last change."""

    key: int
    item: Item
    seq: int
    deleted: bool = False


@dataclass(frozen=True)
class Interaction:
    user_id: str
    item_id: str
    ts: float | None = None
    weight: float = 1.0


def _row_to_stored(row: sqlite3.Row) -> StoredItem:
    item = Item(id=row["id"], title=row["title"], text=row["text"], tags=tuple(json.loads(row["tags"])),
                category=row["category"], price=row["price"], available=bool(row["available"]),
                attributes=json.loads(row["attributes"]), added_at=row["added_at"])
    return StoredItem(key=int(row["key"]), item=item, seq=int(row["seq"]), deleted=bool(row["deleted"]))


class Catalog:
    """A SQLite catalog file; safe to share between threads (one connection behind a lock, WAL journal)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None

    def open(self) -> Catalog:
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a committed change survives a power loss
            db.executescript(SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(items)")}
            if "added_at" not in columns:  # a catalog written before items had an added_at field
                db.execute("ALTER TABLE items ADD COLUMN added_at REAL")
        except sqlite3.DatabaseError as error:
            raise CatalogError(f"cannot open the catalog {self.path}: {error}; is it a SQLite file?") from error
        self._db = db
        return self

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise CatalogError(f"the catalog {self.path} is not open; call Catalog(path).open()")
        return self._db

    @contextmanager
    def _transaction(self) -> Iterator[tuple[sqlite3.Connection, int]]:
        """BEGIN IMMEDIATE .. COMMIT with the next seq; any exception rolls everything back."""
        with self._lock:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                seq = self._seq(db) + 1
                db.execute("INSERT OR REPLACE INTO meta(name, value) VALUES ('seq', ?)", (str(seq),))
                yield db, seq
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @staticmethod
    def _seq(db: sqlite3.Connection) -> int:
        row = db.execute("SELECT value FROM meta WHERE name = 'seq'").fetchone()
        return int(row[0]) if row else 0

    # ------------------------------------------------------------------ writing
    def upsert(self, items: Iterable[Item]) -> tuple[int, list[int]]:
        """Insert or replace ``items`` in one transaction; returns (seq, their keys in order)."""
        items = list(items)
        keys = []
        with self._transaction() as (db, seq):
            for item in items:
                values = (item.title, item.text, json.dumps(list(item.tags)), item.category, item.price,
                          int(item.available), json.dumps(item.attributes, sort_keys=True), item.added_at, seq)
                row = db.execute("SELECT key FROM items WHERE id = ?", (item.id,)).fetchone()
                if row is None:
                    cursor = db.execute(
                        "INSERT INTO items(id, title, text, tags, category, price, available, attributes, added_at, "
                        "seq, deleted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)", (item.id, *values))
                    keys.append(int(cursor.lastrowid))
                else:
                    db.execute("UPDATE items SET title=?, text=?, tags=?, category=?, price=?, available=?, "
                               "attributes=?, added_at=?, seq=?, deleted=0 WHERE key=?", (*values, row[0]))
                    keys.append(int(row[0]))
        return seq, keys

    def delete(self, ids: Iterable[str]) -> tuple[int, list[int], list[str]]:
        """Tombstone ``ids``; returns (seq, keys deleted, ids that were not in the catalog)."""
        ids = list(dict.fromkeys(ids))
        keys, unknown = [], []
        with self._transaction() as (db, seq):
            for item_id in ids:
                row = db.execute("SELECT key FROM items WHERE id = ? AND deleted = 0", (item_id,)).fetchone()
                if row is None:
                    unknown.append(item_id)
                    continue
                db.execute("UPDATE items SET deleted = 1, seq = ? WHERE key = ?", (seq, row[0]))
                keys.append(int(row[0]))
        return seq, keys, unknown

    def add_interactions(self, interactions: Iterable[Interaction]) -> tuple[int, int]:
        """Append interactions (item ids are not checked here: history may mention retired items).

        Returns (seq, how many were added).
        """
        rows = [(i.user_id, i.item_id, i.ts, i.weight) for i in interactions]
        with self._transaction() as (db, seq):
            db.executemany("INSERT INTO interactions(user_id, item_id, ts, weight) VALUES (?, ?, ?, ?)", rows)
        return seq, len(rows)

    def interactions_mark(self) -> int:
        """The newest interaction's rowid (0 for none): it changes when any process appends interactions."""
        with self._lock:
            return int(self.db.execute("SELECT COALESCE(MAX(rowid), 0) FROM interactions").fetchone()[0])

    # ------------------------------------------------------------------ reading
    def seq(self) -> int:
        with self._lock:
            return self._seq(self.db)

    def live_items(self) -> list[StoredItem]:
        with self._lock:
            rows = self.db.execute("SELECT * FROM items WHERE deleted = 0 ORDER BY key").fetchall()
        return [_row_to_stored(row) for row in rows]

    def changes_since(self, seq: int) -> list[StoredItem]:
        """Every item (live or tombstoned) whose last change is after ``seq``."""
        with self._lock:
            rows = self.db.execute("SELECT * FROM items WHERE seq > ? ORDER BY key", (seq,)).fetchall()
        return [_row_to_stored(row) for row in rows]

    def interactions(self) -> list[Interaction]:
        with self._lock:
            rows = self.db.execute("SELECT user_id, item_id, ts, weight FROM interactions ORDER BY rowid").fetchall()
        return [Interaction(r[0], r[1], r[2], r[3]) for r in rows]

    def __len__(self) -> int:
        with self._lock:
            return int(self.db.execute("SELECT COUNT(*) FROM items WHERE deleted = 0").fetchone()[0])


def read_interactions(path: str | Path) -> list[Interaction]:
    """Interactions from CSV/JSONL with ``user_id``, ``item_id`` and optional ``ts``, ``weight`` columns."""
    from core.data.tables import DataError, read_rows, require_columns

    rows = read_rows(path)
    require_columns(rows, ["user_id", "item_id"], str(path))
    out = []
    for number, row in enumerate(rows, start=1):
        values = {}
        for name in ("user_id", "item_id"):
            value = row.get(name)
            if value is None or not str(value).strip():
                raise DataError(f"{path}: row {number} field {name!r} is empty; every interaction needs one")
            values[name] = str(value).strip()
        numbers = {}
        for name, default in (("ts", None), ("weight", 1.0)):
            value = row.get(name)
            if value is None or (isinstance(value, str) and not value.strip()):
                numbers[name] = default
                continue
            try:
                numbers[name] = float(value)
            except (TypeError, ValueError):
                raise DataError(f"{path}: row {number} field {name!r} is {value!r}; expected a number") from None
        if not numbers["weight"] > 0:
            raise DataError(f"{path}: row {number} field 'weight' is {numbers['weight']}; expected > 0")
        out.append(Interaction(values["user_id"], values["item_id"], numbers["ts"], numbers["weight"]))
    return out
