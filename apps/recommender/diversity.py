"""Maximal marginal relevance: trade a little score for results that are not near-copies of each other."""

from __future__ import annotations

import numpy as np


def mmr(scores: np.ndarray, vectors: np.ndarray, k: int, lam: float) -> np.ndarray:
    """Indices of ``k`` picks, greedily maximising ``lam * relevance - (1 - lam) * max cosine to earlier picks``.

    ``scores`` (m,) are min-max scaled to [0, 1] first so that ``lam`` means the same for any
    ranker; ``vectors`` (m, dim) are unit rows. ``lam = 1`` is plain top-k by score.
    """
    m = len(scores)
    k = min(k, m)
    order = np.argsort(-scores, kind="stable")
    if lam >= 1.0 or k <= 1:
        return order[:k]
    spread = float(scores.max() - scores.min())
    relevance = (scores - scores.min()) / spread if spread > 0 else np.ones(m)
    chosen = [int(order[0])]
    closest = vectors @ vectors[chosen[0]]  # (m,) max cosine of each item to the picks so far
    available = np.ones(m, dtype=bool)
    available[chosen[0]] = False
    for _ in range(k - 1):
        value = np.where(available, lam * relevance - (1.0 - lam) * closest, -np.inf)
        pick = int(np.argmax(value))
        chosen.append(pick)
        available[pick] = False
        closest = np.maximum(closest, vectors @ vectors[pick])
    return np.asarray(chosen, dtype=np.int64)
