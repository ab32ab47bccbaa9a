"""Catalog items: one validated shape for rows from CSV, JSONL, Python and HTTP.

Every way an item enters the catalog goes through :func:`parse_items`, so a malformed row
is rejected with its row number, field and reason before anything is written. CSV cells
are text: ``tags`` may be ``"a|b|c"`` or ``"a, b"``, ``available`` may be
``true/false/yes/no/1/0``, ``attributes`` may be a JSON object.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.data.tables import read_rows

MAX_ID_LENGTH = 200
_TRUE = {"true", "yes", "1", "y", "t"}
_FALSE = {"false", "no", "0", "n", "f"}


class ItemValidationError(ValueError):
    """One or more item rows are malformed; ``problems`` lists ``(row, field, reason)``; nothing was written."""

    def __init__(self, problems: list[tuple[int, str, str]], source: str = "items") -> None:
        self.problems = problems
        shown = "; ".join(f"row {row} field {field!r}: {reason}" for row, field, reason in problems[:20])
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        super().__init__(f"{source}: {len(problems)} invalid item field(s), nothing was written: {shown}{more}")


class Item(BaseModel):
    """A catalog item. ``id`` is the caller's key; the text that is embedded is :func:`item_text`."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    id: str = Field(min_length=1, max_length=MAX_ID_LENGTH, description="the caller's item id")
    title: str = Field(min_length=1, max_length=1000)
    text: str = Field(default="", max_length=20_000, description="description")
    tags: tuple[str, ...] = Field(default=(), description="tags (CSV: 'a|b|c' or 'a, b')")
    category: str | None = Field(default=None, max_length=200)
    price: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    available: bool = True
    attributes: dict[str, Any] = Field(default_factory=dict)
    added_at: float | None = Field(default=None, ge=0, allow_inf_nan=False,
                                   description="when the item entered the catalog (Unix seconds); the only source "
                                               "of item age the ranker uses")

    @field_validator("id", mode="before")
    @classmethod
    def _id_text(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # JSON ids like 42 mean "42"
        return value

    @field_validator("tags", mode="before")
    @classmethod
    def _split_tags(cls, value: Any) -> Any:
        if value is None:
            return ()
        if isinstance(value, str):
            separator = "|" if "|" in value else ","
            return tuple(tag.strip() for tag in value.split(separator) if tag.strip())
        return value

    @field_validator("category", "price", "added_at", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("available", mode="before")
    @classmethod
    def _boolean_text(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return True
        if isinstance(value, str):
            word = value.strip().lower()
            if word in _TRUE:
                return True
            if word in _FALSE:
                return False
            raise ValueError(f"{value!r} is not a yes/no value; use true/false, yes/no or 1/0")
        return value

    @field_validator("attributes", mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return {}
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as error:
                raise ValueError(f"is not valid JSON ({error.msg}); expected a JSON object") from None
        if not isinstance(value, dict):
            raise ValueError(f"is {type(value).__name__}; expected a JSON object")
        return value


def item_text(item: Item) -> str:
    """The text an item is embedded from: title, category, tags, then description."""
    parts = [item.title]
    if item.category:
        parts.append(f"Category: {item.category}.")
    if item.tags:
        parts.append(f"Tags: {', '.join(item.tags)}.")
    if item.text:
        parts.append(item.text)
    return " ".join(parts)


def _problems(error: ValidationError, row: int) -> list[tuple[int, str, str]]:
    found = []
    for detail in error.errors():
        field = ".".join(str(part) for part in detail["loc"]) or "<row>"
        reason = detail["msg"].removeprefix("Value error, ")
        if detail["type"] == "extra_forbidden":
            reason = f"is not an item field; known fields: {', '.join(Item.model_fields)}"
        elif detail["type"] == "missing":
            reason = "is required"
        found.append((row, field, reason))
    return found


def parse_items(rows: Iterable[Mapping[str, Any] | Item], source: str = "items", first_row: int = 1) -> list[Item]:
    """Validate every row; ItemValidationError lists every bad field (and duplicate ids) of the batch."""
    items: list[Item] = []
    problems: list[tuple[int, str, str]] = []
    seen: dict[str, int] = {}
    for number, row in enumerate(rows, start=first_row):
        if isinstance(row, Item):
            item = row
        elif not isinstance(row, Mapping):
            problems.append((number, "<row>", f"is {type(row).__name__}; expected an object with item fields"))
            continue
        else:
            try:
                item = Item.model_validate(dict(row))
            except ValidationError as error:
                problems.extend(_problems(error, number))
                continue
        if item.id in seen:
            problems.append((number, "id", f"{item.id!r} repeats row {seen[item.id]}; give each item once per batch"))
            continue
        seen[item.id] = number
        items.append(item)
    if problems:
        raise ItemValidationError(problems, source)
    return items


def read_items(path: str | Path) -> list[Item]:
    """Items from a CSV (header row) or JSONL file; DataError for an unreadable file, ItemValidationError per row."""
    return parse_items(read_rows(path), source=str(path))
