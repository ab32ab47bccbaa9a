"""Serve a fine-tuned classifier: batched predictions with calibrated probabilities."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.calibration import softmax
from core.classifier_model import CONFIG_FILE, ENCODER_DIR, HEAD_FILE, PooledClassifier
from core.data.labelled import LabelledTexts
from core.data.tables import DataError
from core.device import pick_device
from core.inference.logits import predict_logits
from core.metrics import classification_metrics


class ClassifierLoadError(ValueError):
    """A folder that is not a classifier artifact (missing or unreadable files)."""


@dataclass(frozen=True)
class Prediction:
    """Per text: the label, its calibrated probability, and every class's probability."""

    labels: list[str]
    confidences: np.ndarray    # (n,)
    probabilities: np.ndarray  # (n, classes), columns in ``TextClassifier.classes`` order


class TextClassifier:
    """A loaded classifier artifact; ``predict`` is batched and length-bucketed."""

    def __init__(self, model: PooledClassifier, tokenizer, device: str | None = None, batch_size: int = 64):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.device_info = pick_device(device)
        self.model.to(self.device_info.device).eval()

    @classmethod
    def load(cls, path: str | Path, device: str | None = None, batch_size: int = 64) -> TextClassifier:
        path = Path(path)
        required = (CONFIG_FILE, HEAD_FILE, f"{ENCODER_DIR}/config.json")
        missing = [name for name in required if not (path / name).exists()]
        if missing:
            raise ClassifierLoadError(f"{path} is not a classifier artifact: missing {missing}; "
                                      "train one with `python -m core train classifier`")
        try:
            model, tokenizer = PooledClassifier.load(path)
        except (OSError, ValueError, json.JSONDecodeError, RuntimeError) as error:
            raise ClassifierLoadError(f"corrupt classifier artifact {path}: {error}") from error
        return cls(model, tokenizer, device, batch_size)

    @property
    def classes(self) -> list[str]:
        return self.model.labels

    @property
    def temperature(self) -> float:
        return self.model.temperature

    def logits(self, texts: list[str]) -> np.ndarray:
        """Uncalibrated logits, (n, classes)."""
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.model.max_length)["input_ids"]
        if not ids:
            return np.zeros((0, len(self.classes)), np.float32)
        return predict_logits(self.model, self.tokenizer, ids, self.batch_size, self.device_info.device,
                              self.device_info.autocast)

    def predict(self, texts: list[str]) -> Prediction:
        """Labels and temperature-scaled probabilities for ``texts``."""
        return calibrated_prediction(self, texts)


def calibrated_prediction(classifier, texts: list[str]) -> Prediction:
    """Check ``texts``, then labels and probabilities from ``classifier.logits`` scaled by its temperature."""
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"text {i} is {text!r}; expected non-empty text")
    probs = softmax(classifier.logits(texts), classifier.temperature)
    best = probs.argmax(axis=1)
    return Prediction([classifier.classes[i] for i in best], probs[np.arange(len(best)), best], probs)


def labelled_metrics(classifier: TextClassifier, data: LabelledTexts) -> dict:
    """Calibrated accuracy, F1s and ECE of ``classifier`` on labelled ``data``; unknown labels are named."""
    unseen = sorted(set(data.labels) - set(classifier.classes))
    if unseen:
        raise DataError(f"{data.source}: label(s) {unseen[:10]} are not among the model's classes "
                        f"{classifier.classes[:10]}")
    ids = {label: i for i, label in enumerate(classifier.classes)}
    probs = classifier.predict(data.texts).probabilities
    return classification_metrics(np.array([ids[y] for y in data.labels]), probs)
