"""The input message schema and its validation: a bad message becomes a dead letter with a reason.

An input record's value is UTF-8 JSON ``{"id", "ts", "source", "text", "tickers"?}``:

* ``id``: a non-empty string (numbers are accepted and turned into strings);
* ``ts``: event time, epoch seconds (int/float; milliseconds are recognised by size) or an
  ISO-8601 string; missing means "the record's Kafka timestamp";
* ``source``: optional string (``"unknown"`` when absent);
* ``text``: non-empty string, at most ``max_text_chars`` characters;
* ``tickers``: optional list of ticker symbols; absent or empty means "extract from the text".

Validation never raises on bad input: :func:`parse_message` returns a :class:`DeadLetter`
naming the reason, so the stream sends it to the dead-letter topic and goes on.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime

# Epoch seconds beyond this are taken as milliseconds (2286-11-20 in seconds).
_MS_THRESHOLD = 10_000_000_000


@dataclass(frozen=True)
class NewsMessage:
    """A validated input message; ``ts`` is event time in epoch seconds."""

    id: str
    ts: float
    source: str
    text: str
    tickers: tuple[str, ...]


@dataclass(frozen=True)
class DeadLetter:
    """A record that could not be used: ``reason`` is a short code, ``detail`` a sentence for people."""

    reason: str   # not_json | not_object | missing_text | bad_field | oversize
    detail: str


@dataclass(frozen=True)
class MessageLimits:
    """Size limits; a record over either one is dead-lettered as ``oversize``."""

    max_bytes: int = 65_536
    max_text_chars: int = 10_000


def parse_timestamp(value: object) -> float | None:
    """Epoch seconds from epoch seconds/milliseconds or ISO-8601 text; None when not understood."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            return None
        return value / 1000.0 if value > _MS_THRESHOLD else float(value)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            return parse_timestamp(float(text))
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:  # naive times are taken as UTC, never as the machine's zone
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    return None


def parse_message(raw: bytes | None, fallback_ts: float,
                  limits: MessageLimits | None = None) -> NewsMessage | DeadLetter:
    """Validate one record value; ``fallback_ts`` (the Kafka timestamp) is used when ``ts`` is absent."""
    limits = limits or MessageLimits()
    if raw is None:
        return DeadLetter("not_json", "the record has no value (a tombstone); expected a JSON object")
    if len(raw) > limits.max_bytes:
        return DeadLetter("oversize", f"the record is {len(raw)} bytes; the limit is {limits.max_bytes}")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return DeadLetter("not_json", f"the value is not UTF-8 JSON ({error}); expected a JSON object")
    if not isinstance(data, dict):
        return DeadLetter("not_object", f"the value is a JSON {type(data).__name__}; expected an object with 'text'")
    text = data.get("text")
    if not isinstance(text, str) or not text.strip():
        return DeadLetter("missing_text", f"'text' is {text!r}; expected a non-empty string")
    if len(text) > limits.max_text_chars:
        return DeadLetter("oversize", f"'text' has {len(text)} characters; the limit is {limits.max_text_chars}")
    ident = data.get("id")
    if isinstance(ident, bool) or not isinstance(ident, str | int) or not str(ident).strip():
        return DeadLetter("bad_field", f"'id' is {ident!r}; expected a non-empty string")
    if "ts" in data and data["ts"] is not None:
        ts = parse_timestamp(data["ts"])
        if ts is None:
            return DeadLetter("bad_field", f"'ts' is {data['ts']!r}; expected epoch seconds or ISO-8601 text")
    else:
        ts = fallback_ts
    source = data.get("source", "unknown")
    if not isinstance(source, str):
        return DeadLetter("bad_field", f"'source' is {source!r}; expected a string")
    tickers = data.get("tickers") or []
    if not isinstance(tickers, list) or not all(isinstance(t, str) and t.strip() for t in tickers):
        return DeadLetter("bad_field", f"'tickers' is {tickers!r}; expected a list of ticker symbols")
    symbols = tuple(dict.fromkeys(t.strip().lstrip("$").upper() for t in tickers))
    return NewsMessage(id=str(ident).strip(), ts=ts, source=source or "unknown", text=text.strip(), tickers=symbols)
