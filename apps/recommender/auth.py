"""API keys and a per-key rate limit for the HTTP API, as one FastAPI dependency.

A request names its key in the ``X-API-Key`` header. :func:`check_key` is the pure decision
(which key, or why not: 401); :class:`ApiKeyGuard` is the shell around it: it re-reads the keys
file when its size, modification time or inode changes (one ``stat`` per request, so ``keys
revoke`` takes effect at the next request without a restart) and counts each key's requests with
the ``limits`` library (429 with ``Retry-After`` when over).

The limiter is a sliding-window counter in memory: O(1) per request and key, and unlike a fixed
window it does not let a client send two windows' worth across a boundary. It is the asyncio flavour
(``limits.aio``) on purpose: the threaded ``MemoryStorage`` starts a new timer thread every 10 ms
under load, which would compete for the GIL with requests ranked on the event loop (``serve
--workers N``); the asyncio one expires counters in a task on the loop. The whole check costs about
15 microseconds of CPU per request (measured in process against the same app without it). It counts
per process, so with ``serve --workers N`` a key spreading its connections over the workers gets up
to N times its rate (each worker still protects its own share of the machine).
"""

from __future__ import annotations

import logging
import math
import os
import time

from fastapi import HTTPException, Security
from fastapi.security import APIKeyHeader
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from apps.recommender.config import ApiKeysConfig
from apps.recommender.keys import ApiKey, ApiKeyError, match_key, read_keys

log = logging.getLogger(__name__)

HEADER = "X-API-Key"
CREATE_HINT = "create one with `python -m apps.recommender keys create NAME`"
_UNREAD = (-1, -1, -1)
API_KEY_HEADER = APIKeyHeader(name=HEADER, auto_error=False,
                              description=f"an API key of this server ({CREATE_HINT})")


class AuthError(Exception):
    """Why a request is refused: ``status`` (401, 429, 503), the reason, and headers to send with it."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}


def check_key(keys: dict[str, ApiKey], presented: str | None) -> ApiKey:
    """The active key record ``presented`` belongs to; AuthError 401 saying why not (no network, no disk)."""
    unauthorized = {"WWW-Authenticate": HEADER}
    if not keys:
        raise AuthError(401, f"this server has no API keys yet; {CREATE_HINT} and send it in the {HEADER} header",
                        unauthorized)
    if not presented:
        raise AuthError(401, f"missing {HEADER} header; send this server's API key in it (no key yet? "
                             f"{CREATE_HINT})", unauthorized)
    record = match_key(keys, presented)
    if record is None:
        raise AuthError(401, f"unknown API key in the {HEADER} header; `python -m apps.recommender keys list` "
                             f"shows the valid key ids", unauthorized)
    if not record.active:
        raise AuthError(401, f"API key {record.id} ({record.name!r}) was revoked at {record.revoked}; "
                             f"{CREATE_HINT}", unauthorized)
    return record


class ApiKeyGuard:
    """The dependency the protected routes share: returns the caller's key record, or raises 401/429/503."""

    def __init__(self, config: ApiKeysConfig) -> None:
        self.config = config
        self._keys: dict[str, ApiKey] = {}
        self._error: str | None = None              # why the keys file could not be read, if so
        self._signature: tuple[int, int, int] | None = _UNREAD  # the keys file's (inode, mtime, size) when read
        self._limiter: SlidingWindowCounterRateLimiter | None = None
        self._limits: dict[int, RateLimitItem] = {}

    def start(self) -> None:
        """Read the keys (warning when none can be used) and start the limiter; the app's start-up calls this."""
        self._limiter = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._refresh()
        if self._error:
            log.error("%s", self._error)
        elif not any(record.active for record in self._keys.values()):
            log.warning("no API keys in %s: every request but GET /health is refused (401); %s",
                        self.config.keys_file, CREATE_HINT)
        else:
            log.info("API keys from %s: %d active; %d requests per minute per key unless a key sets its own",
                     self.config.keys_file, sum(r.active for r in self._keys.values()), self.config.rate_per_minute)

    async def __call__(self, api_key: str | None = Security(API_KEY_HEADER)) -> ApiKey:
        self._refresh()
        if self._error:
            raise HTTPException(503, detail=f"the server cannot read its API keys: {self._error}")
        try:
            record = check_key(self._keys, api_key)
            await self._count(record)
        except AuthError as error:
            raise HTTPException(error.status, detail=error.detail, headers=error.headers) from None
        return record

    async def _count(self, record: ApiKey) -> None:
        rate = record.rate_per_minute or self.config.rate_per_minute
        item = self._limits.get(rate)
        if item is None:
            item = self._limits[rate] = RateLimitItemPerMinute(rate)
        if self._limiter is None:  # a guard used without the app's start-up (a bare dependency in a test)
            self._limiter = SlidingWindowCounterRateLimiter(MemoryStorage())
        if not await self._limiter.hit(item, record.id):
            reset = (await self._limiter.get_window_stats(item, record.id)).reset_time
            retry_after = max(1, math.ceil(reset - time.time()))
            raise AuthError(429, f"API key {record.id} is over its rate limit of {rate} requests per minute; "
                                 f"retry in {retry_after} s", {"Retry-After": str(retry_after)})

    def _refresh(self) -> None:
        """Re-read the keys file if it changed since the last look (atomic writes give it a new inode)."""
        try:
            stat = os.stat(self.config.keys_file)
            signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            signature = None
        if signature == self._signature:
            return
        try:
            self._keys, self._error = read_keys(self.config.keys_file), None
        except ApiKeyError as error:
            self._keys, self._error = {}, str(error)
            log.error("%s", error)
        self._signature = signature
