"""Soft training targets from annotator agreement.

A label that only half the annotators chose is a weaker target than one all of them chose
(Financial PhraseBank's 50Agree file holds both). Training toward the agreement share, instead
of toward certainty, keeps the model from memorising the split votes as if they were facts.
"""

from __future__ import annotations

import numbers

import numpy as np

from core.data.tables import DataError


def check_agreement(agreement: list[float] | None, rows: int, source: str) -> np.ndarray:
    """The agreement shares as an array; one per row, each in (0, 1]."""
    if agreement is None:
        raise DataError(f"{source}: agreement_targets needs each row's annotator agreement (a share in (0, 1]), "
                        "and this data has none; drop agreement_targets or give the data an agreement column")
    if len(agreement) != rows:
        raise DataError(f"{source}: {len(agreement)} agreement values for {rows} rows; expected one per row")
    for number, value in enumerate(agreement, start=1):
        if not isinstance(value, numbers.Real) or not 0 < value <= 1:
            raise DataError(f"{source}: row {number} has agreement {value!r}; expected a share in (0, 1]")
    return np.asarray(agreement, dtype=np.float64)


def agreement_targets(labels: np.ndarray, agreement: np.ndarray, classes: int,
                      label_smoothing: float = 0.0) -> np.ndarray:
    """Per row: the label gets its agreement share, the other classes share the rest evenly.

    Rows whose agreement leaves the label more than ordinary label smoothing would are
    smoothed as usual, so full-agreement rows train as they would without this option.
    """
    ceiling = 1.0 - label_smoothing + label_smoothing / classes  # the label's share under label smoothing
    label_share = np.minimum(agreement, ceiling)
    targets = np.repeat(((1.0 - label_share) / (classes - 1))[:, None], classes, axis=1)
    targets[np.arange(len(labels)), labels] = label_share
    return targets.astype(np.float32)
