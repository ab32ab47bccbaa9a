"""Model soups (Wortsman et al., 2022): one classifier whose weights average several fine-tunes.

Fine-tunes of one pre-trained encoder (other seeds, other intermediate tasks) tend to stay in
one basin of the loss, so the average of their weights is itself a good model, often better
than each of them, and it costs no more to serve than one (an ensemble costs one forward
pass per member). The greedy recipe tries the ingredients best-first by their own dev score
and keeps each only if the soup's dev score does not fall, so an ingredient from another
basin is simply left out. Dev picks the ingredients; test is never looked at here.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from core.calibration import fit_temperature, softmax
from core.classifier_model import PooledClassifier
from core.data.labelled import LabelledTexts
from core.inference.classifier import ClassifierLoadError, TextClassifier
from core.metrics import classification_metrics

log = logging.getLogger(__name__)
METRICS = ("accuracy", "macro_f1", "weighted_f1")


class SoupError(ValueError):
    """Ingredients that cannot be averaged, or a dev set the soup cannot be scored on."""


@dataclass
class Soup:
    """The averaged model, the ingredients kept, and every greedy step with its dev score."""

    model: PooledClassifier
    tokenizer: object
    ingredients: list[str]
    steps: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)   # dev (calibrated), temperature, dev_uncalibrated_ece
    seconds: float = 0.0

    @property
    def labels(self) -> list[str]:
        return self.model.labels

    @property
    def averages(self) -> bool:
        """False when no average beat the best candidate alone: the "soup" is that candidate, not worth saving."""
        return len(self.ingredients) > 1

    def save(self, path: Path) -> None:
        self.model.save(path, self.tokenizer)


def check_compatible(models: Sequence[PooledClassifier]) -> None:
    """Raise :class:`SoupError` unless ``models`` share labels, weight names and shapes (so they can be averaged)."""
    if not models:
        raise SoupError("no ingredients to average; give at least one classifier")
    first, reference = models[0], models[0].state_dict()
    for i, model in enumerate(models):
        state = model.state_dict()
        if model.labels != first.labels:
            raise SoupError(f"ingredient {i} has labels {model.labels}; expected {first.labels} like ingredient 0")
        if state.keys() != reference.keys():
            odd = sorted(state.keys() ^ reference.keys())[:5]
            raise SoupError(f"ingredient {i} has other weights than ingredient 0 (e.g. {odd}); "
                            "expected fine-tunes of one encoder architecture")
        for name, tensor in state.items():
            if tensor.shape != reference[name].shape:
                raise SoupError(f"ingredient {i} weight {name} has shape {tuple(tensor.shape)}; "
                                f"expected {tuple(reference[name].shape)} like ingredient 0")


def average_weights(models: Sequence[PooledClassifier]) -> PooledClassifier:
    """A copy of ``models[0]`` whose floating-point weights are the mean of all ``models``'s."""
    check_compatible(models)
    states = [m.state_dict() for m in models]
    averaged = {name: (torch.stack([s[name].float() for s in states]).mean(0).to(tensor.dtype)
                       if tensor.is_floating_point() else tensor)
                for name, tensor in states[0].items()}
    soup = copy.deepcopy(models[0])
    soup.load_state_dict(averaged)
    return soup.eval()


def _dev_logits(model: PooledClassifier, tokenizer, dev: LabelledTexts, device: str | None) -> np.ndarray:
    return TextClassifier(model, tokenizer, device=device).logits(dev.texts)


def _scores(logits: np.ndarray, y: np.ndarray) -> dict:
    return classification_metrics(y, softmax(logits))


def greedy_soup(candidates: dict[str, Path], dev: LabelledTexts, metric: str = "macro_f1",
                device: str | None = None) -> Soup:
    """Greedy soup of the classifier artifacts ``candidates`` (name -> folder), scored on ``dev``.

    Every candidate is scored alone; then, best first, each joins the soup if the averaged
    model's dev ``metric`` is at least the soup's so far. The result's temperature is fitted
    on dev, like a trained classifier's.
    """
    if metric not in METRICS:
        raise SoupError(f"metric {metric!r} is not supported; expected one of {list(METRICS)}")
    if len(candidates) < 2:
        raise SoupError(f"a soup needs at least 2 candidates; got {sorted(candidates)}")
    started = time.monotonic()
    models, tokenizers = {}, {}
    for name, path in candidates.items():
        try:
            models[name], tokenizers[name] = PooledClassifier.load(Path(path))
        except (OSError, ValueError, KeyError) as error:
            raise ClassifierLoadError(f"candidate {name} at {path} is not a loadable classifier artifact: "
                                      f"{error}") from error
    first = next(iter(candidates))
    labels = models[first].labels
    unknown = sorted(set(dev.labels) - set(labels))
    if unknown:
        raise SoupError(f"dev label(s) {unknown[:10]} are not among the candidates' classes {labels}")
    vocab = tokenizers[first].get_vocab()
    for name in candidates:
        if tokenizers[name].get_vocab() != vocab:
            raise SoupError(f"candidate {name} has another tokenizer than {first}; "
                            "expected fine-tunes of one pre-trained encoder")
    check_compatible(list(models.values()))  # before the long scoring
    y = np.array([labels.index(label) for label in dev.labels])

    alone, alone_logits = {}, {}
    for name in candidates:
        alone_logits[name] = _dev_logits(models[name], tokenizers[name], dev, device)
        alone[name] = _scores(alone_logits[name], y)[metric]
        log.info("candidate %s alone: dev %s %.4f", name, metric, alone[name])
    order = sorted(candidates, key=lambda n: -alone[n])
    kept, best = [order[0]], alone[order[0]]
    soup, logits = models[order[0]], alone_logits[order[0]]  # the soup so far and its dev logits
    steps = [{"ingredient": order[0], "alone": alone[order[0]], "soup": best, "kept": True}]
    for name in order[1:]:
        trial = average_weights([models[n] for n in (*kept, name)])
        trial_logits = _dev_logits(trial, tokenizers[first], dev, device)
        score = _scores(trial_logits, y)[metric]
        keep = score >= best
        steps.append({"ingredient": name, "alone": alone[name], "soup": score, "kept": keep})
        log.info("soup %s + %s: dev %s %.4f (%s)", kept, name, metric, score, "kept" if keep else "left out")
        if keep:
            kept.append(name)
            best, soup, logits = score, trial, trial_logits

    soup.temperature = fit_temperature(logits, y)
    metrics = {"dev": classification_metrics(y, softmax(logits, soup.temperature)),
               "temperature": soup.temperature, "dev_uncalibrated_ece": _scores(logits, y)["ece"]}
    return Soup(soup, tokenizers[first], kept, steps, metrics, time.monotonic() - started)


def soup_from_registry(registry, name: str, versions: Sequence[int], dev: LabelledTexts,
                       metric: str = "macro_f1", device: str | None = None) -> tuple[Soup, list]:
    """Greedy soup of versions of registry model ``name``; also returns the candidates' cards."""
    cards = [registry.card(name, v) for v in versions]
    wrong = [f"v{c.version} ({c.task})" for c in cards if c.task != "classifier"]
    if wrong:
        raise SoupError(f"{name} {', '.join(wrong)} are not classifiers; a soup averages classifier fine-tunes")
    candidates = {f"v{c.version}": registry.path(name, c.version) for c in cards}
    return greedy_soup(candidates, dev, metric, device), cards


def soup_card_fields(soup: Soup, cards: list, metric: str) -> dict:
    """The ModelCard fields of a soup: base model, train data and settings taken from its ingredients."""
    kept = [c for c in cards if f"v{c.version}" in soup.ingredients]
    train, seen = [], set()
    for card in kept:
        for record in card.data:
            if record.get("role") == "train" and (record["path"], record["sha256"]) not in seen:
                seen.add((record["path"], record["sha256"]))
                train.append(record)
    return {
        "base_model": kept[0].base_model, "labels": soup.labels, "data": train,
        "hyperparameters": {"method": "greedy_soup", "metric": metric,
                            "candidates": [f"v{c.version}" for c in cards], "ingredients": soup.ingredients},
        "extra": {"steps": soup.steps, "temperature": soup.metrics["temperature"],
                  "dev_uncalibrated_ece": soup.metrics["dev_uncalibrated_ece"],
                  "soup_seconds": round(soup.seconds, 1),
                  "ingredient_cards": {f"v{c.version}": {"base_model": c.base_model,
                                                         "hyperparameters": c.hyperparameters,
                                                         "dev": c.metrics.get("dev")} for c in kept}},
    }
