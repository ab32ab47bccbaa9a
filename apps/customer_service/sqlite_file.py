"""One SQLite file per bot record (tickets, decisions): a fresh connection per call, the schema ensured."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def connect(path: Path, schema: str) -> sqlite3.Connection:
    """A connection to ``path`` (its folder created) with rows as mappings and ``schema`` applied.

    A connection per call is safe across the action server's threads and across processes (the CLI
    reads while the server writes); the 10 s timeout waits out another writer's lock.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=10)
    connection.row_factory = sqlite3.Row
    connection.executescript(schema)
    return connection
