"""Soft targets from annotator agreement: the label keeps its share, the rest is spread evenly."""

from __future__ import annotations

import numpy as np
import pytest

from core.data.tables import DataError
from core.finetune.soft_targets import agreement_targets, check_agreement


def test_the_label_gets_its_agreement_share_and_rows_sum_to_one():
    targets = agreement_targets(np.array([0, 2, 1]), np.array([0.75, 0.5, 0.66]), classes=3)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(targets[0], [0.75, 0.125, 0.125], rtol=1e-6)
    np.testing.assert_allclose(targets[1], [0.25, 0.25, 0.5], rtol=1e-6)
    assert targets[2].argmax() == 1


def test_full_agreement_is_smoothed_like_ordinary_label_smoothing():
    targets = agreement_targets(np.array([1, 1]), np.array([1.0, 0.5]), classes=4, label_smoothing=0.2)
    np.testing.assert_allclose(targets[0], [0.05, 0.85, 0.05, 0.05], rtol=1e-6)  # 1 - 0.2 + 0.2 / 4
    assert targets[1, 1] == pytest.approx(0.5)  # agreement below that keeps its own share


@pytest.mark.parametrize(("agreement", "message"), [
    (None, "has none"),
    ([1.0, 0.5], "2 agreement values for 3 rows"),
    ([1.0, 0.0, 0.5], "row 2 has agreement 0.0"),
    ([1.0, 0.5, 1.5], "row 3 has agreement 1.5"),
])
def test_bad_agreement_is_refused_with_the_row_and_the_expectation(agreement, message):
    with pytest.raises(DataError, match=message):
        check_agreement(agreement, rows=3, source="train.csv")
