"""Produce a JSONL/CSV file into the input topic, keyed by ticker, at a fixed rate.

Each row needs a text (``--text-column``); ``id``, ``ts``, ``source`` and ``tickers`` are
used when present, else made up: ids from the file name and row number, event times
``start + row * spacing`` (synthetic timestamps for sets like the Twitter financial news
one). A message about several tickers is sent once per ticker, keyed by it, so each
ticker's window lives in one partition; a message without tickers is sent unkeyed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaProducer

from apps.finance_monitor.tickers import TickerExtractor
from core.data.tables import DataError, read_rows

log = logging.getLogger(__name__)


class ReplayError(RuntimeError):
    """The broker did not acknowledge some records."""


@dataclass(frozen=True)
class ReplayOptions:
    rate: float = 0.0              # messages per second; 0: as fast as the broker takes them
    start_ts: float | None = None  # first synthetic event time (epoch s); None: now
    spacing_s: float = 10.0        # event-time step between rows without their own ts
    text_column: str = "text"
    limit: int | None = None


def messages_from_file(path: str | Path, options: ReplayOptions, extractor: TickerExtractor) -> Iterator[dict]:
    """The input messages a file stands for (not yet fanned out by ticker)."""
    rows = read_rows(path)
    if rows and options.text_column not in rows[0]:
        raise DataError(f"{path}: no column {options.text_column!r} (columns: {sorted(rows[0])}); "
                        "pass --text-column")
    start = time.time() if options.start_ts is None else options.start_ts
    stem = Path(path).stem
    for number, row in enumerate(rows[: options.limit] if options.limit else rows):
        text = row.get(options.text_column)
        message = {
            "id": str(row.get("id") or f"{stem}-{number}"),
            "ts": row.get("ts") or start + number * options.spacing_s,
            "source": row.get("source") or stem,
            "text": text,
        }
        tickers = row.get("tickers")
        if isinstance(tickers, str):
            tickers = [t for t in tickers.replace(",", " ").split() if t]
        message["tickers"] = list(tickers) if tickers else list(extractor.extract(text or ""))
        yield message


def fan_out(message: dict) -> list[tuple[bytes | None, bytes]]:
    """(key, value) records for a message: one per ticker, keyed by it; unkeyed when it names none."""
    value = json.dumps(message, ensure_ascii=False).encode("utf-8")
    return [(t.encode(), value) for t in message["tickers"]] or [(None, value)]


def replay(producer: KafkaProducer, topic: str, messages: Iterator[dict], rate: float = 0.0) -> int:
    """Send ``messages`` at ``rate`` per second (0: unthrottled); returns the records sent, all acknowledged.

    The producer should be idempotent, with ``acks="all"`` and retries (see :func:`make_producer`).
    """
    sent = 0
    failed: list[Exception] = []
    started = time.monotonic()
    for message in messages:
        for key, value in fan_out(message):
            if rate > 0:
                delay = started + sent / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            producer.send(topic, key=key, value=value).add_errback(failed.append)
            sent += 1
    producer.flush()
    if failed:  # flush does not raise for records the broker refused
        raise ReplayError(f"{len(failed)} of {sent} records were not acknowledged by the broker: {failed[0]!r}")
    return sent


def make_producer(bootstrap_servers: str) -> KafkaProducer:
    """An idempotent producer that waits for all in-sync replicas and retries transient broker errors.

    Idempotence (producer id + sequence numbers) makes the broker drop the copies a retry would
    otherwise write (a lost acknowledgement during a broker outage); a whole re-run of a replay still
    writes every record again, and the stream's duplicate check (same id, same key) counts those once.
    """
    return KafkaProducer(bootstrap_servers=bootstrap_servers, enable_idempotence=True, acks="all", linger_ms=5,
                         retries=10, retry_backoff_ms=200)
