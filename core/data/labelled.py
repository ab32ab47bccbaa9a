"""Labelled texts for sequence classification, validated before any model loads."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from core.data.tables import DataError, read_rows, require_columns, text_value


@dataclass(frozen=True)
class LabelledTexts:
    """Texts with string labels, and where they came from (``source`` is a path or a name).

    ``agreement``, when the data has it, is per row the share of annotators who chose the
    label (1.0: all did); training can turn it into soft targets (``agreement_targets``).
    """

    texts: list[str]
    labels: list[str]
    source: str
    agreement: list[float] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def label_counts(self) -> Counter:
        return Counter(self.labels)


def load_labelled(path: str | Path, text_column: str = "text", label_column: str = "label",
                  agreement_column: str | None = None) -> LabelledTexts:
    """Read a CSV/JSONL file of labelled texts; every row needs non-empty text and a label
    (and, when ``agreement_column`` is named, its annotator agreement: a share in (0, 1])."""
    rows = read_rows(path)
    source = str(path)
    require_columns(rows, [text_column, label_column] + ([agreement_column] if agreement_column else []), source)
    texts, labels, agreement = [], [], []
    for number, row in enumerate(rows, start=1):
        texts.append(text_value(row.get(text_column), source, number, text_column))
        label = row.get(label_column)
        if label is None or str(label).strip() == "":
            raise DataError(f"{source}: row {number} has no label in column {label_column!r}")
        labels.append(str(label).strip())
        if agreement_column:
            agreement.append(_share(row.get(agreement_column), source, number, agreement_column))
    return LabelledTexts(texts, labels, source, agreement if agreement_column else None)


def _share(value, source: str, number: int, column: str) -> float:
    try:
        share = float(value)
    except (TypeError, ValueError):
        share = float("nan")
    if not 0 < share <= 1:  # NaN fails too
        raise DataError(f"{source}: row {number} has {column} {value!r}; expected a share of annotators in (0, 1]")
    return share


def label_space(train: LabelledTexts, *others: LabelledTexts) -> list[str]:
    """The sorted label names of ``train``; other splits must not hold labels unseen in train."""
    labels = sorted(set(train.labels))
    if len(labels) < 2:
        raise DataError(f"{train.source}: only one class ({labels[0]!r}); a classifier needs at least two")
    known = set(labels)
    for split in others:
        unseen = sorted(set(split.labels) - known)
        if unseen:
            more = "…" if len(labels) > 10 else ""
            raise DataError(f"{split.source}: label(s) {unseen[:10]} do not occur in the training data "
                            f"{train.source}; the model can only predict {labels[:10]}{more}")
    return labels
