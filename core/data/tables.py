"""Read CSV or JSONL files into rows (dicts), with errors that name the file and line.

Every trainer reads its input through :func:`read_rows`, so tests can hand in small files
and bad input fails here, before any model is loaded.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path


class DataError(ValueError):
    """Input data that cannot be used: the message names the file, the value and the expectation."""


def read_rows(path: str | Path, encoding: str = "utf-8") -> list[dict]:
    """Rows of a ``.csv`` (header line required) or ``.jsonl``/``.json`` lines file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} does not exist; expected a .csv or .jsonl file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with open(path, newline="", encoding=encoding) as handle:
                rows = list(csv.DictReader(handle))
        elif suffix in {".jsonl", ".json", ".ndjson"}:
            rows = []
            with open(path, encoding=encoding) as handle:
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as error:
                        raise DataError(f"{path}:{number}: not valid JSON ({error.msg}); "
                                        "expected one JSON object per line") from None
                    if not isinstance(row, dict):
                        raise DataError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
                    rows.append(row)
        else:
            raise DataError(f"data file {str(path)!r} has suffix {suffix!r}; expected .csv or .jsonl")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not {encoding} text ({error.reason} at byte {error.start})") from None
    if not rows:
        raise DataError(f"data file {str(path)!r} has no rows")
    return rows


def require_columns(rows: list[dict], columns: list[str], source: str) -> None:
    """Fail when a column is missing, listing the columns that exist."""
    present = list(rows[0].keys())
    missing = [column for column in columns if column not in present]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing}; the file has {present}. "
                        "Choose the columns with --text-column/--label-column.")


def text_value(value: object, source: str, row_number: int, column: str) -> str:
    """A non-empty text cell, stripped; anything else is a DataError naming the row."""
    if not isinstance(value, str):
        raise DataError(f"{source}: row {row_number} column {column!r} is {value!r} "
                        f"({type(value).__name__}); expected non-empty text")
    text = value.strip()
    if not text:
        raise DataError(f"{source}: row {row_number} column {column!r} is empty; expected non-empty text")
    return text
