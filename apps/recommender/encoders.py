"""Text encoders the recommender accepts, and which embedder it uses by default.

Anything with ``dim`` and ``encode(texts) -> (n, dim) float32 unit rows`` and a ``source``
string works (core's :class:`~core.inference.embedder.Embedder` does). The default is the
registry's ``production`` version of ``recommender-embedder`` (fine-tuned on interaction
data) when one exists, else the packaged base model ``all-MiniLM-L6-v2``.
:class:`HashingEncoder` is a tiny real encoder (hashed word and character n-grams) for tests
and for scale benchmarks where model inference is not what is measured.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from core.registry import ModelNotFoundError, Registry

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "recommender-embedder"
BASE_MODEL = "all-MiniLM-L6-v2"
_WORD = re.compile(r"[a-z0-9]+")


class TextEncoder(Protocol):
    source: str

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def default_embedder_reference(registry: Registry | None = None, name: str = DEFAULT_MODEL_NAME) -> str:
    """The registry's ``production`` ``name`` when promoted, else the base model (logged either way)."""
    registry = registry if registry is not None else Registry()
    try:
        path = registry.path(name, "production")
    except (ModelNotFoundError, ValueError) as error:
        log.info("no production %r in the registry (%s); using the base embedder %s", name, error, BASE_MODEL)
        return BASE_MODEL
    log.info("using the registry's production %s: %s", name, path)
    return str(path)


def load_encoder(reference: str | None, device: str | None = None) -> TextEncoder:
    """``"hashing"``/``"hashing:<dim>"`` for :class:`HashingEncoder`, None for the default, else core's Embedder."""
    if reference is not None and reference.startswith("hashing"):
        _, _, dim = reference.partition(":")
        return HashingEncoder(int(dim) if dim else 256)
    from core.inference.embedder import Embedder

    return Embedder.load(reference or default_embedder_reference(), device=device, max_seq_length=128)


class HashingEncoder:
    """Bag of hashed words and character trigrams, L2-normalised: deterministic, instant, no model."""

    def __init__(self, dim: int = 256) -> None:
        if dim < 8:
            raise ValueError(f"dim={dim} is too small for a hashing encoder; use at least 8")
        self._dim = dim
        self.source = f"hashing:{dim}"

    @property
    def dim(self) -> int:
        return self._dim

    def _features(self, text: str) -> list[str]:
        words = _WORD.findall(text.lower())
        grams = [f"#{w[i:i + 3]}" for w in words for i in range(max(1, len(w) - 2))]
        return words + grams

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {row} is {text!r}; expected a string")
            for feature in self._features(text):
                digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
                bucket = int.from_bytes(digest[:4], "little") % self._dim
                sign = 1.0 if digest[4] & 1 else -1.0
                out[row, bucket] += sign * (2.0 if not feature.startswith("#") else 1.0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out[norms[:, 0] == 0, 0] = 1.0  # an empty text gets a fixed unit vector, never NaN
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
