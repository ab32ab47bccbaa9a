"""Serve a cross-encoder re-ranker: score (query, passage) pairs and re-order candidates.

``Reranker.load`` takes a re-ranker artifact folder (as written by ``write_artifact`` with
``train_reranker``'s save callback, or found with ``Registry.path``) or a cross-encoder
model folder. Scores are the model's sigmoid outputs in (0, 1): higher is more relevant.
They compare candidates of one query; they are not calibrated probabilities.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.artifacts import CARD_FILE, ArtifactError, check_artifact
from core.device import DeviceInfo, pick_device

log = logging.getLogger(__name__)


class RerankerLoadError(ValueError):
    """A path that does not hold a loadable cross-encoder; the message names it and says why."""


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def check_reranker_folder(folder: Path) -> None:
    """Fail unless ``folder`` holds a cross-encoder (a sequence-classification model)."""
    if not folder.is_dir():
        what = "a file" if folder.exists() else "missing"
        raise RerankerLoadError(f"re-ranker folder {folder} is {what}; point at a re-ranker artifact folder")
    if (folder / CARD_FILE).exists():
        try:
            card = check_artifact(folder, required=("config.json",))
        except ArtifactError as error:
            raise RerankerLoadError(str(error)) from None
        if card.task != "reranker":
            raise RerankerLoadError(f"{folder} is a {card.task!r} artifact ({card.name!r}), not a re-ranker; "
                                    "load it with the matching class or pick a re-ranker artifact")
    model_type = _read_json(folder / "config_sentence_transformers.json").get("model_type")
    architectures = _read_json(folder / "config.json").get("architectures") or []
    if model_type != "CrossEncoder" and not any(str(a).endswith("ForSequenceClassification") for a in architectures):
        found = "no config.json" if not (folder / "config.json").exists() else f"architectures {architectures}"
        raise RerankerLoadError(f"{folder} is not a cross-encoder ({found}); a re-ranker is a sequence-"
                                "classification model, e.g. one trained with core.finetune.reranker.train_reranker")


class Reranker:
    """A loaded cross-encoder; ``score`` and ``rerank`` are batched."""

    def __init__(self, model, device_info: DeviceInfo, batch_size: int = 64, source: str = ""):
        self.model = model  # a sentence_transformers.cross_encoder.CrossEncoder
        self.device_info = device_info
        self.batch_size = batch_size
        self.source = source

    @classmethod
    def load(cls, path: str | Path, device: str | None = None, batch_size: int = 64) -> Reranker:
        """Load a re-ranker artifact or cross-encoder folder; RerankerLoadError names a bad path."""
        from sentence_transformers.cross_encoder import CrossEncoder

        folder = Path(path).expanduser()
        check_reranker_folder(folder)
        device_info = pick_device(device)
        try:
            model = CrossEncoder(str(folder), device=str(device_info.device))
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            raise RerankerLoadError(f"cannot load a re-ranker from {folder}: {error}") from error
        if model.num_labels != 1:
            raise RerankerLoadError(f"{folder} has {model.num_labels} output labels; a re-ranker has 1 (a relevance "
                                    "score), so this is a classifier, not a re-ranker")
        log.info("loaded re-ranker %s on %s", folder, device_info.name)
        return cls(model, device_info, batch_size, source=str(folder))

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """(len(passages),) float32 relevance scores of each passage for ``query``, in input order."""
        passages = list(passages)
        for i, text in enumerate([query, *passages]):
            if not isinstance(text, str):
                name = "query" if i == 0 else f"passage {i - 1}"
                raise TypeError(f"{name} is {text!r} ({type(text).__name__}); expected a string")
        if not passages:
            return np.zeros(0, dtype=np.float32)
        with self.device_info.autocast():
            scores = self.model.predict([(query, passage) for passage in passages], batch_size=self.batch_size,
                                        show_progress_bar=False, convert_to_numpy=True)
        return np.asarray(scores, dtype=np.float32).reshape(len(passages))

    def rerank(self, query: str, passages: Sequence[str], top_k: int | None = None) -> list[tuple[int, float]]:
        """``(index into passages, score)`` for the ``top_k`` best passages (all when None), best first."""
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k is {top_k}; ask for at least 1 passage, or None for all")
        scores = self.score(query, passages)
        order = np.argsort(-scores, kind="stable")[:top_k]
        return [(int(i), float(scores[i])) for i in order]
