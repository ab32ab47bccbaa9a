"""What interaction logs say about items: popularity and item-to-item co-occurrence.

Item-kNN similarity is the cosine between items' user columns, ``cos(i, j) = C_ij /
sqrt(n_i n_j)`` with ``C = X^T X`` over the binary user x item matrix ``X``. The matrix ``C``
is never formed: the score of every item for a weighted history ``w`` is
``D^-1/2 X^T X D^-1/2 w`` (two sparse products), which costs the interactions of the users
who touched the history items, not items squared.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from scipy import sparse


class InteractionStats:
    """Popularity and co-occurrence over items numbered by surrogate key (0..size-1)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.counts = np.zeros(size, dtype=np.float32)
        self._x: sparse.csr_matrix | None = None
        self._xt: sparse.csr_matrix | None = None
        self._inv_sqrt = np.zeros(size, dtype=np.float32)
        self.users = 0
        self._popular: np.ndarray | None = None  # keys by popularity, made on first use

    @classmethod
    def from_histories(cls, histories: Mapping[str, Iterable[int]], size: int) -> InteractionStats:
        """``histories`` maps a user to the keys they interacted with (repeats count once)."""
        stats = cls(size)
        rows, cols = [], []
        for row, keys in enumerate(histories.values()):
            unique = np.unique(np.fromiter((k for k in keys if 0 <= k < size), dtype=np.int64))
            rows.append(np.full(len(unique), row, dtype=np.int64))
            cols.append(unique)
        stats.users = len(rows)
        if rows:
            r, c = np.concatenate(rows), np.concatenate(cols)
            x = sparse.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(len(rows), size))
            stats._x, stats._xt = x, x.T.tocsr()
            stats.counts = np.asarray(x.sum(axis=0)).ravel().astype(np.float32)
            stats._inv_sqrt = np.where(stats.counts > 0, 1.0 / np.sqrt(np.maximum(stats.counts, 1)), 0.0)
            stats._inv_sqrt = stats._inv_sqrt.astype(np.float32)
        return stats

    @property
    def empty(self) -> bool:
        return self._x is None or self._x.nnz == 0

    def popularity(self, keys: np.ndarray) -> np.ndarray:
        """Interaction counts of ``keys`` (0 for keys unknown to the log)."""
        keys = np.asarray(keys, dtype=np.int64)
        out = np.zeros(len(keys), dtype=np.float32)
        inside = (keys >= 0) & (keys < self.size)
        out[inside] = self.counts[keys[inside]]
        return out

    def cooccurrence(self, keys: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """(size,) sum over history items h of ``weights[h] * cos(item, h)``; zeros without a log."""
        scores = np.zeros(self.size, dtype=np.float32)
        if self.empty or len(keys) == 0:
            return scores
        keys = np.asarray(keys, dtype=np.int64)
        inside = (keys >= 0) & (keys < self.size)
        w = np.zeros(self.size, dtype=np.float32)
        np.add.at(w, keys[inside], np.asarray(weights, dtype=np.float32)[inside])
        w *= self._inv_sqrt
        per_user = self._x @ w             # (users,)
        scores = self._xt @ per_user       # (size,)
        return (scores * self._inv_sqrt).astype(np.float32)

    def cooccurrence_pair(self, keys_a: np.ndarray, weights_a: np.ndarray, keys_b: np.ndarray,
                          weights_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`cooccurrence` for two weighted histories in one pass over the log (two (size,) arrays)."""
        if self.empty or (len(keys_a) == 0 and len(keys_b) == 0):
            return np.zeros(self.size, dtype=np.float32), np.zeros(self.size, dtype=np.float32)
        # only the history items' columns of X are touched on the way in: (h, 2) weights, not (size, 2)
        keys = np.concatenate([np.asarray(keys_a, np.int64), np.asarray(keys_b, np.int64)])
        w = np.zeros((len(keys), 2), dtype=np.float32)
        w[: len(keys_a), 0] = weights_a
        w[len(keys_a):, 1] = weights_b
        inside = (keys >= 0) & (keys < self.size)
        keys, w = keys[inside], w[inside] * self._inv_sqrt[keys[inside], None]
        per_user = self._xt[keys].T @ w                # (users, 2)
        scores = (self._xt @ per_user).T                # (2, size)
        scores *= self._inv_sqrt[None, :]
        return scores[0], scores[1]

    def top_popular(self, n: int) -> np.ndarray:
        """Keys of the ``n`` most interacted-with items, most popular first (ties by key)."""
        if self.empty:
            return np.zeros(0, dtype=np.int64)
        if self._popular is None:
            order = np.lexsort((np.arange(self.size), -self.counts))
            self._popular = order[: int((self.counts > 0).sum())].astype(np.int64)
        return self._popular[:n]

    def pairwise(self, keys_a: np.ndarray, keys_b: np.ndarray) -> np.ndarray:
        """(len(a), len(b)) item-kNN cosines between two small key lists (for explanations)."""
        out = np.zeros((len(keys_a), len(keys_b)), dtype=np.float32)
        if self.empty or not len(keys_a) or not len(keys_b):
            return out
        a, b = np.asarray(keys_a, dtype=np.int64), np.asarray(keys_b, dtype=np.int64)
        ok_a, ok_b = (a >= 0) & (a < self.size), (b >= 0) & (b < self.size)
        if not ok_a.any() or not ok_b.any():
            return out
        co = (self._xt[a[ok_a]] @ self._xt[b[ok_b]].T).toarray()
        co *= self._inv_sqrt[a[ok_a]][:, None] * self._inv_sqrt[b[ok_b]][None, :]
        out[np.ix_(ok_a, ok_b)] = co
        return out
