"""Training pairs for retrieval and recommendation, validated before any model loads.

Two kinds of input file (CSV or JSONL) give the same :class:`TextPairs`:

* **pairs**: a query column and a positive column (``query``/``positive`` by default), plus
  an optional ``negative`` column of given hard negatives (a text, or in JSONL a list of
  texts; empty means none);
* **labelled texts**: a text column and a label column; texts that share a label are
  positives of each other. Pairs are sampled per label with a seed, and capped per label so
  that a few large labels do not dominate the in-batch negatives.

Besides the pairs, :class:`TextPairs` knows every text that must never be used as a
negative for a query (:meth:`TextPairs.known_positives`): the query's other positives and,
for labelled data, every text of its label. Negative mining and evaluation both use it, so
a same-label text is neither mined as a "hard negative" nor scored as a miss.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from core.data.tables import DataError, read_rows, require_columns, text_value

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PairDataConfig:
    """Which columns hold what, and how labelled texts become pairs."""

    mode: Literal["auto", "pairs", "labelled"] = "auto"  # auto: pairs if the query/positive columns exist
    query_column: str = "query"
    positive_column: str = "positive"
    negative_column: str = "negative"   # optional in the file
    text_column: str = "text"
    label_column: str = "label"
    max_pairs_per_label: int = 200      # labelled mode: at most this many pairs from one label
    seed: int = 13                      # labelled mode: which pairs are sampled


@dataclass(frozen=True)
class TextPairs:
    """``len(self)`` (query, positive) pairs, each with zero or more given hard negatives.

    ``labels[i]`` is the label shared by query ``i`` and its positive when the pairs were
    built from labelled texts (else ``labels`` is None). ``source`` names the file.
    """

    queries: tuple[str, ...]
    positives: tuple[str, ...]
    negatives: tuple[tuple[str, ...], ...]
    labels: tuple[str, ...] | None = None
    source: str = "<memory>"

    def __len__(self) -> int:
        return len(self.queries)

    def corpus(self) -> list[str]:
        """The distinct positives in first-seen order: the candidates a query is ranked against."""
        return list(dict.fromkeys(self.positives))

    def known_positives(self) -> dict[str, frozenset[str]]:
        """Per distinct query, every text that is a positive for it (never a negative)."""
        known: dict[str, set[str]] = defaultdict(set)
        for query, positive in zip(self.queries, self.positives, strict=True):
            known[query].add(positive)
        if self.labels is not None:
            by_label: dict[str, set[str]] = defaultdict(set)
            for query, positive, label in zip(self.queries, self.positives, self.labels, strict=True):
                by_label[label].update((query, positive))
            for query, label in zip(self.queries, self.labels, strict=True):
                known[query] |= by_label[label]
        return {query: frozenset(texts) for query, texts in known.items()}


def make_pairs(queries: list[str], positives: list[str], negatives: list[list[str]] | None = None,
               labels: list[str] | None = None, source: str = "<memory>") -> TextPairs:
    """Validated :class:`TextPairs` from lists (texts are stripped; empty ones are a DataError)."""
    negatives = negatives if negatives is not None else [[] for _ in queries]
    lengths = {"queries": len(queries), "positives": len(positives), "negatives": len(negatives)}
    if labels is not None:
        lengths["labels"] = len(labels)
    if len(set(lengths.values())) != 1:
        raise DataError(f"{source}: the pair lists have different lengths {lengths}; give one entry per pair")
    clean_q = [text_value(q, source, i, "query") for i, q in enumerate(queries, start=1)]
    clean_p = [text_value(p, source, i, "positive") for i, p in enumerate(positives, start=1)]
    clean_n = [tuple(text_value(n, source, i, "negative") for n in row) for i, row in enumerate(negatives, start=1)]
    pairs = TextPairs(tuple(clean_q), tuple(clean_p), tuple(clean_n),
                      tuple(str(label) for label in labels) if labels is not None else None, source)
    _check_enough(pairs)
    return pairs


def _check_enough(pairs: TextPairs) -> None:
    if len(pairs) < 2:
        raise DataError(f"{pairs.source}: {len(pairs)} pair(s); training and evaluation need at least 2 "
                        "(query, positive) pairs, since the other pairs' positives are the negatives")
    distinct = len(pairs.corpus())
    if distinct < 2:
        raise DataError(f"{pairs.source}: all {len(pairs)} pairs have the same positive {pairs.positives[0]!r}; "
                        "at least 2 distinct positives are needed, or nothing can be ranked against anything")


def pairs_from_labelled(texts: list[str], labels: list[str], max_pairs_per_label: int = 200, seed: int = 13,
                        source: str = "<memory>") -> TextPairs:
    """Positive pairs of texts that share a label: per label, all pairs or a seeded sample of them.

    A label with ``n`` distinct texts has ``n * (n - 1) / 2`` pairs; at most
    ``max_pairs_per_label`` are kept, drawn with ``seed`` (same input, same pairs). Each pair
    is randomly oriented, so every text serves as a query as well as a positive. Labels
    with a single distinct text give no pair and are skipped (logged).
    """
    if max_pairs_per_label < 1:
        raise DataError(f"max_pairs_per_label is {max_pairs_per_label}; it must be at least 1")
    by_label: dict[str, list[str]] = defaultdict(list)
    for number, (text, label) in enumerate(zip(texts, labels, strict=True), start=1):
        by_label[str(label)].append(text_value(text, source, number, "text"))
    rng = random.Random(seed)
    queries, positives, pair_labels, singles = [], [], [], []
    for label in sorted(by_label):
        members = list(dict.fromkeys(by_label[label]))
        if len(members) < 2:
            singles.append(label)
            continue
        for a, b in _sample_pairs(len(members), max_pairs_per_label, rng):
            first, second = (members[a], members[b]) if rng.random() < 0.5 else (members[b], members[a])
            queries.append(first)
            positives.append(second)
            pair_labels.append(label)
    if not queries:
        counts = {label: len(set(members)) for label, members in sorted(by_label.items())[:10]}
        raise DataError(f"{source}: no label has 2 distinct texts (distinct texts per label: {counts}); "
                        "labelled texts make pairs only within a label, so give each label at least 2 texts")
    if singles:
        log.info("%s: %d label(s) with one distinct text give no pair: %s", source, len(singles), singles[:10])
    pairs = TextPairs(tuple(queries), tuple(positives), tuple(() for _ in queries), tuple(pair_labels), source)
    _check_enough(pairs)
    return pairs


def _sample_pairs(n: int, cap: int, rng: random.Random) -> list[tuple[int, int]]:
    """Up to ``cap`` distinct unordered index pairs out of ``n`` items, in random order."""
    total = n * (n - 1) // 2
    if total <= cap:
        chosen = list(itertools.combinations(range(n), 2))
        rng.shuffle(chosen)
        return chosen
    seen: set[tuple[int, int]] = set()
    chosen = []
    while len(chosen) < cap:  # cap < total, so rejection sampling ends quickly
        a, b = sorted(rng.sample(range(n), 2))
        if (a, b) not in seen:
            seen.add((a, b))
            chosen.append((a, b))
    return chosen


def _negative_cell(value: object, source: str, number: int, column: str) -> list[str]:
    """A negative cell: empty/None (no negative), a text, or (JSONL) a list of texts."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    if isinstance(value, list):
        return [text_value(item, source, number, column) for item in value]
    return [text_value(value, source, number, column)]


def load_pairs(path: str | Path, config: PairDataConfig = PairDataConfig()) -> TextPairs:
    """Read pairs or labelled texts from a CSV/JSONL file (see the module doc)."""
    source = str(path)
    rows = read_rows(path)
    present = list(rows[0].keys())
    has_pairs = config.query_column in present and config.positive_column in present
    mode = config.mode
    if mode == "auto":
        has_labelled = config.text_column in present and config.label_column in present
        if not (has_pairs or has_labelled):
            raise DataError(
                f"{source}: the file has columns {present}; expected pairs ({config.query_column!r}, "
                f"{config.positive_column!r}[, {config.negative_column!r}]) or labelled texts "
                f"({config.text_column!r}, {config.label_column!r}). Name the columns in PairDataConfig."
            )
        mode = "pairs" if has_pairs else "labelled"
    if mode == "labelled":
        require_columns(rows, [config.text_column, config.label_column], source)
        texts, labels = [], []
        for number, row in enumerate(rows, start=1):
            texts.append(text_value(row.get(config.text_column), source, number, config.text_column))
            label = row.get(config.label_column)
            if label is None or str(label).strip() == "":
                raise DataError(f"{source}: row {number} has no label in column {config.label_column!r}; "
                                "every labelled text needs a label")
            labels.append(str(label).strip())
        return pairs_from_labelled(texts, labels, config.max_pairs_per_label, config.seed, source)
    if mode != "pairs":
        raise DataError(f"pair data mode {mode!r} is not one of 'auto', 'pairs', 'labelled'")
    require_columns(rows, [config.query_column, config.positive_column], source)
    queries, positives, negatives = [], [], []
    for number, row in enumerate(rows, start=1):
        queries.append(text_value(row.get(config.query_column), source, number, config.query_column))
        positives.append(text_value(row.get(config.positive_column), source, number, config.positive_column))
        negatives.append(_negative_cell(row.get(config.negative_column), source, number, config.negative_column))
    return make_pairs(queries, positives, negatives, source=source)
