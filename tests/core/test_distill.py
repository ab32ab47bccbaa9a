"""Distillation's soft rows: teachers averaged in one class order, bad shapes and class sets refused."""

from __future__ import annotations

import numpy as np
import pytest

from core.data.tables import DataError
from core.finetune.distill import SoftLabelled, teacher_probabilities, without_texts
from core.inference.classifier import Prediction


class FixedTeacher:
    """A stand-in classifier that gives every text the same probabilities (in its own class order)."""

    def __init__(self, classes: list[str], row: list[float]) -> None:
        self.classes = classes
        self.row = np.asarray(row)

    def predict(self, texts: list[str]) -> Prediction:
        probabilities = np.tile(self.row, (len(texts), 1))
        best = probabilities.argmax(axis=1)
        return Prediction([self.classes[i] for i in best], probabilities.max(axis=1), probabilities)


def test_teachers_are_averaged_in_one_class_order() -> None:
    first = FixedTeacher(["negative", "neutral", "positive"], [0.6, 0.3, 0.1])
    reordered = FixedTeacher(["positive", "negative", "neutral"], [0.5, 0.2, 0.3])
    soft = teacher_probabilities([first, reordered], ["a", "b"], "two teachers")
    assert soft.classes == ["negative", "neutral", "positive"]
    np.testing.assert_allclose(soft.probabilities, [[0.4, 0.3, 0.3]] * 2)


def test_teachers_with_other_classes_are_refused() -> None:
    with pytest.raises(DataError, match="teachers disagree on the classes"):
        teacher_probabilities([FixedTeacher(["a", "b"], [0.5, 0.5]), FixedTeacher(["a", "c"], [0.5, 0.5])],
                              ["text"], "mixed")
    with pytest.raises(ValueError, match="at least one teacher"):
        teacher_probabilities([], ["text"], "none")


def test_columns_follow_the_students_labels_and_other_label_sets_are_refused() -> None:
    soft = SoftLabelled(["x"], np.array([[0.7, 0.2, 0.1]]), ["positive", "neutral", "negative"], "teachers")
    np.testing.assert_allclose(soft.columns_for(["negative", "neutral", "positive"]), [[0.1, 0.2, 0.7]])
    with pytest.raises(DataError, match=r"differ from the student's labels \['bad', 'good'\]"):
        soft.columns_for(["bad", "good"])


@pytest.mark.parametrize("probabilities, message", [
    (np.array([[0.5, 0.5]]), "shape"),
    (np.array([[0.5, 0.2, 0.1]]), "do not sum to 1"),
])
def test_malformed_probabilities_are_refused(probabilities: np.ndarray, message: str) -> None:
    with pytest.raises(DataError, match=message):
        SoftLabelled(["x"], probabilities, ["a", "b", "c"], "broken")


def test_held_out_texts_are_kept_out_of_the_soft_rows() -> None:
    assert without_texts(["keep me", " dev sentence ", "test one"], ["dev sentence", "test one "]) == ["keep me"]
