"""Knowledge distillation: a student learns from its teachers' probabilities on unlabelled text.

Teachers (one fine-tune or an ensemble of them) label extra in-domain text that nobody
annotated with their calibrated class probabilities (Hinton et al. 2015). The student then
trains on the gold rows as usual plus these soft rows, so what the ensemble knows serves at
one model's cost, or a large model's at a small one's. The teachers never see the dev split
through this: it only selects the student's epoch, as for any fine-tune.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.data.tables import DataError


@dataclass(frozen=True)
class SoftLabelled:
    """Texts with a probability per class (columns in ``classes`` order), and who labelled them."""

    texts: list[str]
    probabilities: np.ndarray  # (n, classes); each row sums to 1
    classes: list[str]
    source: str

    def __post_init__(self) -> None:
        shape = (len(self.texts), len(self.classes))
        if self.probabilities.shape != shape:
            raise DataError(f"{self.source}: probabilities of shape {self.probabilities.shape}; "
                            f"expected {shape} (one row per text, one column per class)")
        if len(self.texts) and not np.allclose(self.probabilities.sum(axis=1), 1.0, atol=1e-3):
            raise DataError(f"{self.source}: some probability rows do not sum to 1; expected a distribution per text")

    def __len__(self) -> int:
        return len(self.texts)

    def columns_for(self, labels: list[str]) -> np.ndarray:
        """The probabilities with columns reordered to ``labels`` (the student's label space)."""
        if sorted(labels) != sorted(self.classes):
            raise DataError(f"{self.source}: the teachers' classes {self.classes} differ from the student's "
                            f"labels {labels}; distil only between models of the same label set")
        order = [self.classes.index(label) for label in labels]
        return self.probabilities[:, order].astype(np.float32)


def teacher_probabilities(teachers: Sequence, texts: list[str], source: str) -> SoftLabelled:
    """The teachers' mean calibrated probabilities on ``texts``.

    ``teachers`` are loaded ``TextClassifier``s; each one's temperature (fitted on its dev
    split) calibrates it before averaging, so no teacher dominates by over-confidence.
    """
    if not teachers:
        raise ValueError("distillation needs at least one teacher")
    classes = list(teachers[0].classes)
    for teacher in teachers[1:]:
        if sorted(teacher.classes) != sorted(classes):
            raise DataError(f"teachers disagree on the classes: {classes} and {list(teacher.classes)}; "
                            "an ensemble must share one label set")
    total = np.zeros((len(texts), len(classes)), dtype=np.float64)
    for teacher in teachers:
        probabilities = teacher.predict(texts).probabilities
        total += probabilities[:, [list(teacher.classes).index(c) for c in classes]]
    return SoftLabelled(list(texts), total / len(teachers), classes, source)


def without_texts(texts: list[str], excluded: Sequence[str]) -> list[str]:
    """``texts`` minus any whose stripped text is in ``excluded`` (keeps dev and test out of the soft rows)."""
    held_out = {t.strip() for t in excluded}
    return [t for t in texts if t.strip() not in held_out]
