"""Ticker extraction: cashtags (``$NOVA``) plus a configurable dictionary of symbols and company names.

The dictionary is a YAML mapping ``SYMBOL: [name, other name, ...]``. Names match
case-insensitively on word boundaries ("Novagen" matches "Novagen's results", not
"Novagenix"); a bare symbol in the text matches only when written in capitals and listed
in the dictionary, because short symbols are often ordinary words ("ALL", "ON").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

CASHTAG = re.compile(r"(?<![\w$])\$([A-Za-z]{1,6}(?:\.[A-Za-z]{1,2})?)\b")
SYMBOL = re.compile(r"^[A-Z][A-Z0-9.]{0,9}$")


class TickerConfigError(ValueError):
    """An unreadable or invalid ticker dictionary; the message names the file, the entry and the fix."""


@dataclass(frozen=True)
class TickerExtractor:
    """Finds ticker symbols in text; ``known`` maps symbol -> company names.

    ``cashtags``: "any" accepts every cashtag, "known" only those in the dictionary.
    """

    known: dict[str, tuple[str, ...]] = field(default_factory=dict)
    cashtags: str = "any"

    def __post_init__(self) -> None:
        if self.cashtags not in {"any", "known"}:
            raise TickerConfigError(f"cashtags={self.cashtags!r}; expected 'any' or 'known'")
        patterns = []
        for symbol, names in self.known.items():
            for name in (*names, symbol):
                flags = "" if name == symbol else "(?i)"
                patterns.append((symbol, re.compile(rf"{flags}(?<![\w$]){re.escape(name)}(?!\w)")))
        object.__setattr__(self, "_patterns", patterns)

    def extract(self, text: str) -> tuple[str, ...]:
        """Symbols in order of first appearance, without duplicates."""
        found: list[tuple[int, str]] = []
        for match in CASHTAG.finditer(text):
            symbol = match.group(1).upper()
            if self.cashtags == "any" or symbol in self.known:
                found.append((match.start(), symbol))
        for symbol, pattern in self._patterns:
            match = pattern.search(text)
            if match:
                found.append((match.start(), symbol))
        found.sort()
        return tuple(dict.fromkeys(symbol for _, symbol in found))


def load_tickers(path: str | Path | None, cashtags: str = "any") -> TickerExtractor:
    """Read the dictionary YAML (None: cashtags only)."""
    if path is None:
        return TickerExtractor({}, cashtags)
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TickerConfigError(f"ticker dictionary {path} does not exist; pass --tickers with a YAML file "
                                "mapping SYMBOL: [company names]") from None
    except yaml.YAMLError as error:
        raise TickerConfigError(f"ticker dictionary {path} is not valid YAML: {error}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise TickerConfigError(f"ticker dictionary {path} holds a {type(data).__name__}; expected a mapping "
                                "SYMBOL: [company names], e.g. NOVA: [Novagen]")
    known: dict[str, tuple[str, ...]] = {}
    for symbol, names in data.items():
        if not isinstance(symbol, str) or not SYMBOL.match(symbol):
            raise TickerConfigError(f"{path}: symbol {symbol!r} is not a ticker; use capitals, e.g. NOVA")
        if names is None:
            names = []
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
            raise TickerConfigError(f"{path}: names of {symbol} are {names!r}; expected a list of company names")
        known[symbol] = tuple(n.strip() for n in names)
    return TickerExtractor(known, cashtags)
