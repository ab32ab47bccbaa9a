"""The HTTP API's keys: made here, kept only as SHA-256 hashes in one JSON file, checked in constant time.

A key is ``rk-<id>.<secret>``: ``id`` is 8 hex characters, not secret, by which a key is listed and
revoked; ``secret`` is ``secrets.token_urlsafe(32)`` (256 random bits). The file keeps each key's id,
name, the SHA-256 of the whole key, when it was created and revoked, and its own rate limit if any::

    {"version": 1, "keys": [{"id": "1f2e3d4c", "name": "shop-frontend", "sha256": "9b1f…",
                             "created": "2025-06-01T10:00:00+00:00", "revoked": null, "rate_per_minute": null}]}

A fast hash is enough because the secret is random, not a password: nobody can guess their way back
from the hash. The file is rewritten atomically (a reader sees the old or the new one) with mode 0600,
under a lock so that two ``keys`` commands at once do not lose each other's change. A running server
re-reads it when it changes (see :mod:`apps.recommender.auth`), so a revocation needs no restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from core.atomic import atomic_write_bytes

PREFIX = "rk-"
NAME_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_ID_RULE = re.compile(r"[0-9a-f]{8}")
_UNMATCHABLE = hashlib.sha256(b"no key has this hash").hexdigest()  # compared against when the id is unknown


class ApiKeyError(ValueError):
    """A bad name, rate or key id given to the key store, or a keys file it cannot read."""


@dataclass(frozen=True)
class ApiKey:
    """One key's record (never the key itself). ``rate_per_minute=None``: the server's default."""

    id: str
    name: str
    sha256: str
    created: str
    revoked: str | None = None
    rate_per_minute: int | None = None

    @property
    def active(self) -> bool:
        return self.revoked is None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_id_of(key: str) -> str | None:
    """The id a presented key claims (``rk-<id>.…``), or None when it does not have a key's shape."""
    head, dot, _ = key.partition(".")
    return head[len(PREFIX):] if dot and head.startswith(PREFIX) else None


def match_key(keys: dict[str, ApiKey], presented: str) -> ApiKey | None:
    """The record whose hash is that of ``presented`` (revoked or not), or None; compared in constant time."""
    record = keys.get(key_id_of(presented) or "")
    expected = record.sha256 if record is not None else _UNMATCHABLE
    return record if hmac.compare_digest(hash_key(presented), expected) and record is not None else None


def read_keys(path: Path) -> dict[str, ApiKey]:
    """The records of the keys file by id; empty when there is no file. Raises ApiKeyError if unreadable."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return {}
    try:
        records = [ApiKey(**record) for record in json.loads(raw)["keys"]]
    except (ValueError, KeyError, TypeError) as error:
        raise ApiKeyError(f"the API keys file {path} cannot be read ({error}); restore it from a backup or "
                          "move it away and create new keys with `python -m apps.recommender keys create NAME`") \
            from None
    return {record.id: record for record in records}


class KeyStore:
    """Create, list and revoke the keys in ``path`` (the server only reads it)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def list(self) -> list[ApiKey]:
        return sorted(read_keys(self.path).values(), key=lambda record: record.created)

    def create(self, name: str, rate_per_minute: int | None = None) -> tuple[ApiKey, str]:
        """A new key for ``name``: its record and the key, which exists nowhere else afterwards."""
        if not isinstance(name, str) or not NAME_RULE.fullmatch(name):
            raise ApiKeyError(f"key name {name!r} is not allowed; expected 1 to 64 letters, digits or ._@- "
                              "starting with a letter or digit, such as shop-frontend")
        if rate_per_minute is not None and (isinstance(rate_per_minute, bool) or not isinstance(rate_per_minute, int)
                                            or rate_per_minute < 1):
            raise ApiKeyError(f"rate {rate_per_minute!r} is out of range; expected a whole number >= 1 of requests "
                              "per minute (or no --rate for the server's default)")
        with self._locked() as keys:
            for record in keys.values():
                if record.active and record.name == name:
                    raise ApiKeyError(f"an active key named {name!r} exists already (id {record.id}); choose "
                                      f"another name, or revoke it first with `keys revoke {record.id}`")
            key_id = secrets.token_hex(4)
            while key_id in keys:
                key_id = secrets.token_hex(4)
            key = f"{PREFIX}{key_id}.{secrets.token_urlsafe(32)}"
            record = ApiKey(id=key_id, name=name, sha256=hash_key(key), created=_now(),
                            rate_per_minute=rate_per_minute)
            keys[key_id] = record
        return record, key

    def revoke(self, key_id: str) -> ApiKey:
        """Mark ``key_id`` revoked (kept in the file, for the record); revoking twice changes nothing."""
        with self._locked() as keys:
            record = keys.get(key_id)
            if record is None:
                shape = "" if _ID_RULE.fullmatch(str(key_id)) else " (an id is 8 hex characters, such as 1f2e3d4c)"
                raise ApiKeyError(f"no API key with id {key_id!r} in {self.path}{shape}; "
                                  "`python -m apps.recommender keys list` shows the ids")
            if record.active:
                keys[key_id] = record = replace(record, revoked=_now())
        return record

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, ApiKey]]:
        """The records, under an exclusive lock; written back (atomically, mode 0600) when the block succeeds."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            keys = read_keys(self.path)
            before = dict(keys)
            yield keys
            if keys != before:
                body = {"version": 1, "keys": [asdict(record) for record in keys.values()]}
                # mkstemp creates the temporary file 0600 and os.replace keeps that mode
                atomic_write_bytes(self.path, (json.dumps(body, indent=2) + "\n").encode("utf-8"))
        finally:
            os.close(lock)  # releases the lock


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
