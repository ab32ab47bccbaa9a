"""Serve a bi-encoder: texts in, L2-normalised float32 embeddings out.

``Embedder.load`` takes an embedder artifact folder (as written by ``write_artifact`` with
``train_embedder``'s save callback, or found with ``Registry.path``), a plain
sentence-transformers folder, or any model reference that :func:`core.model_refs.resolve_model`
knows (``all-MiniLM-L6-v2``). Since the vectors are unit length, a dot product is the
cosine similarity, which is what the embedder was trained on and what an inner-product
index expects.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.artifacts import CARD_FILE, ArtifactError, check_artifact
from core.device import DeviceInfo, pick_device
from core.model_refs import ModelReferenceError, resolve_model

log = logging.getLogger(__name__)


class EmbedderLoadError(ValueError):
    """A path or reference that does not hold a loadable bi-encoder; the message names it and says why."""


def _model_type(folder: Path) -> str | None:
    """``model_type`` from a sentence-transformers config (``CrossEncoder`` for re-rankers), if any."""
    try:
        config = json.loads((folder / "config_sentence_transformers.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return config.get("model_type") if isinstance(config, dict) else None


def check_embedder_folder(folder: Path) -> None:
    """Fail unless ``folder`` looks like a bi-encoder: a sentence-transformers or transformers model folder."""
    if (folder / CARD_FILE).exists():
        try:
            card = check_artifact(folder, required=("config.json",))
        except ArtifactError as error:
            raise EmbedderLoadError(str(error)) from None
        if card.task != "embedder":
            raise EmbedderLoadError(f"{folder} is a {card.task!r} artifact ({card.name!r}), not an embedder; "
                                    "load it with the matching class or pick an embedder artifact")
    if not (folder / "modules.json").exists() and not (folder / "config.json").exists():
        raise EmbedderLoadError(f"{folder} is not a model folder: it has neither modules.json nor config.json; "
                                "point at an embedder artifact or a sentence-transformers model folder")
    if _model_type(folder) == "CrossEncoder":
        raise EmbedderLoadError(f"{folder} holds a cross-encoder (re-ranker), which scores pairs and cannot embed "
                                "single texts; load it with core.inference.reranker.Reranker")


class Embedder:
    """A loaded bi-encoder; ``encode`` is batched and returns unit-length float32 rows."""

    def __init__(self, model, device_info: DeviceInfo, batch_size: int = 64, source: str = ""):
        self.model = model  # a sentence_transformers.SentenceTransformer
        self.device_info = device_info
        self.batch_size = batch_size
        self.source = source

    @classmethod
    def load(cls, reference: str | Path, device: str | None = None, batch_size: int = 64,
             max_seq_length: int | None = None) -> Embedder:
        """Load an artifact folder, a model folder or a model reference (see the module doc)."""
        from sentence_transformers import SentenceTransformer

        path = Path(reference).expanduser()
        if path.exists():
            if not path.is_dir():
                raise EmbedderLoadError(f"{path} is a file; an embedder is a folder (artifact or model folder)")
            check_embedder_folder(path)
            location = str(path)
        else:
            try:
                location = resolve_model(str(reference)).location
            except ModelReferenceError as error:
                raise EmbedderLoadError(str(error)) from None
        device_info = pick_device(device)
        try:
            model = SentenceTransformer(location, device=str(device_info.device))
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            raise EmbedderLoadError(f"cannot load an embedder from {location}: {error}") from error
        if max_seq_length is not None:
            model.max_seq_length = max_seq_length
        log.info("loaded embedder %s on %s (dim %d)", location, device_info.name, model.get_embedding_dimension())
        return cls(model, device_info, batch_size, source=location)

    @property
    def dim(self) -> int:
        """Length of each embedding."""
        return int(self.model.get_embedding_dimension())

    def encode(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """(len(texts), dim) float32 embeddings with unit L2 norm; an empty input gives (0, dim)."""
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {i} is {text!r} ({type(text).__name__}); expected a string")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self.device_info.autocast():
            vectors = self.model.encode(texts, batch_size=batch_size or self.batch_size, normalize_embeddings=True,
                                        convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)
