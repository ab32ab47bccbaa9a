"""What a caller may ask for: history entries and result filters, validated with messages that name the value."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from apps.recommender.items import Item


class RequestError(ValueError):
    """A recommendation request that cannot be served as given (k out of range, bad filter or history)."""


@dataclass(frozen=True)
class HistoryEntry:
    """One thing the user consumed: an item id, optionally when (any increasing number) and how much."""

    id: str
    ts: float | None = None
    weight: float = 1.0


def parse_history(history: Iterable[Any] | None) -> list[HistoryEntry]:
    """Ids, ``{"id", "ts", "weight"}`` dicts or HistoryEntry objects, ordered oldest first.

    Entries with timestamps are sorted by them (stable); without, the given order is the
    order of consumption. Weights must be positive.
    """
    if history is None:
        return []
    if isinstance(history, str | bytes):
        raise RequestError(f"history is the string {history!r}; expected a list of item ids")
    entries = []
    for position, entry in enumerate(history):
        if isinstance(entry, HistoryEntry):
            parsed = entry
        elif isinstance(entry, str | int) and not isinstance(entry, bool):
            parsed = HistoryEntry(str(entry))
        elif isinstance(entry, Mapping) and "id" in entry:
            parsed = HistoryEntry(str(entry["id"]), entry.get("ts"), float(entry.get("weight", 1.0)))
        else:
            raise RequestError(f"history[{position}] is {entry!r}; expected an item id or {{'id': ..., 'ts': ...}}")
        if not parsed.weight > 0:
            raise RequestError(f"history[{position}] has weight {parsed.weight!r}; weights must be > 0")
        entries.append(parsed)
    if any(e.ts is not None for e in entries):
        entries.sort(key=lambda e: float("-inf") if e.ts is None else e.ts)
    return entries


@dataclass(frozen=True)
class Filters:
    """Which items may be returned. ``category`` is one name or several; matching is case-insensitive."""

    category: tuple[str, ...] | None = None
    available: bool | None = None
    exclude_seen: bool = True
    min_price: float | None = None
    max_price: float | None = None

    @classmethod
    def parse(cls, value: Filters | Mapping[str, Any] | None) -> Filters:
        if value is None:
            return cls()
        if isinstance(value, Filters):
            return value
        if not isinstance(value, Mapping):
            raise RequestError(f"filters is {value!r}; expected an object such as {{'category': 'shoes'}}")
        known = {"category", "available", "exclude_seen", "min_price", "max_price"}
        unknown = sorted(set(value) - known)
        if unknown:
            raise RequestError(f"unknown filter(s) {unknown}; known filters: {sorted(known)}")
        category = value.get("category")
        if isinstance(category, str):
            category = (category,)
        elif category is not None:
            category = tuple(str(c) for c in category)
        return cls(category, value.get("available"), bool(value.get("exclude_seen", True)),
                   value.get("min_price"), value.get("max_price"))

    @property
    def restrictive(self) -> bool:
        return any(v is not None for v in (self.category, self.available, self.min_price, self.max_price))

    def allows(self, item: Item) -> bool:
        if self.category is not None and (item.category or "").lower() not in {c.lower() for c in self.category}:
            return False
        if self.available is not None and item.available != self.available:
            return False
        if self.min_price is not None and (item.price is None or item.price < self.min_price):
            return False
        return not (self.max_price is not None and (item.price is None or item.price > self.max_price))
