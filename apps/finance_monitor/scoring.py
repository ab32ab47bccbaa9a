"""The sentiment scorer: core's fine-tuned classifier from the registry, as the engine's ``Scorer``."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from apps.finance_monitor.engine import Score
from core.inference.classifier import TextClassifier
from core.registry import Registry

log = logging.getLogger(__name__)

REQUIRED_LABELS = {"negative", "neutral", "positive"}


class ModelLabelsError(ValueError):
    """The registered model does not predict negative/neutral/positive."""


@dataclass
class SentimentScorer:
    """Scores texts with ``classifier``; ``version`` ("name:vN") goes into every score and alert."""

    classifier: TextClassifier
    version: str

    def __post_init__(self) -> None:
        missing = REQUIRED_LABELS - set(self.classifier.classes)
        if missing:
            raise ModelLabelsError(f"model {self.version} predicts {self.classifier.classes}; the stream needs "
                                   f"the labels {sorted(REQUIRED_LABELS)} (missing {sorted(missing)})")
        self._neg = self.classifier.classes.index("negative")
        self._pos = self.classifier.classes.index("positive")

    def __call__(self, texts: list[str]) -> list[Score]:
        prediction = self.classifier.predict(texts)
        classes = self.classifier.classes
        return [Score(label, {c: float(p) for c, p in zip(classes, row, strict=True)},
                      float(row[self._pos] - row[self._neg]))
                for label, row in zip(prediction.labels, prediction.probabilities, strict=True)]


def load_scorer(registry: Registry, name: str, version: str = "production", device: str | None = None,
                batch_size: int = 64) -> SentimentScorer:
    """Load ``name`` at ``version`` (alias or number) from ``registry``; raises ModelNotFoundError with the fix."""
    path = registry.path(name, version)
    card = registry.card(name, version)
    classifier = TextClassifier.load(path, device=device, batch_size=batch_size)
    log.info("loaded %s v%s from %s on %s", name, card.version, path, classifier.device_info.name)
    return SentimentScorer(classifier, f"{name}:v{card.version}")
