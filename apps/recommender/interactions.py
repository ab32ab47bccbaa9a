"""What interaction logs say about items: popularity and item-to-item co-occurrence.

Item-kNN similarity is the cosine between items' user columns, ``cos(i, j) = C_ij /
sqrt(n_i n_j)`` with ``C = X^T X`` over the binary user x item matrix ``X``. The matrix ``C``
is never formed: the score of every item for a weighted history ``w`` is
``D^-1/2 X^T X D^-1/2 w`` (two sparse products), which costs the interactions of the users
who touched the history items, not items squared.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy import sparse


@dataclass(frozen=True)
class SparseScores:
    """Scores of the few items that have one (``keys`` ascending, ``values`` aligned); any other item scores 0."""

    keys: np.ndarray
    values: np.ndarray

    @classmethod
    def empty(cls) -> SparseScores:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.float32))

    def at(self, keys: np.ndarray) -> np.ndarray:
        """The scores of ``keys`` (0 for keys without one)."""
        keys = np.asarray(keys, dtype=np.int64)
        out = np.zeros(len(keys), dtype=np.float32)
        if not len(self.keys):
            return out
        slot = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        found = self.keys[slot] == keys
        out[found] = self.values[slot[found]]
        return out

    def top(self, n: int) -> np.ndarray:
        """Keys of the ``n`` best positive scores, unordered."""
        positive = np.flatnonzero(self.values > 0)
        if n <= 0 or not len(positive):
            return np.zeros(0, dtype=np.int64)
        if len(positive) > n:
            positive = positive[np.argpartition(-self.values[positive], n - 1)[:n]]
        return self.keys[positive]

    def scaled(self, factor: float) -> SparseScores:
        return SparseScores(self.keys, (self.values * factor).astype(np.float32))


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
        scores, _ = self.cooccurrence_pair(keys, weights, np.zeros(0, np.int64), np.zeros(0, np.float32))
        dense = np.zeros(self.size, dtype=np.float32)
        dense[scores.keys] = scores.values
        return dense

    def cooccurrence_pair(self, keys_a: np.ndarray, weights_a: np.ndarray, keys_b: np.ndarray,
                          weights_b: np.ndarray) -> tuple[SparseScores, SparseScores]:
        """:meth:`cooccurrence` for two weighted histories in one pass over the log, as sparse scores.

        Works on the CSR arrays directly: a request touches a few hundred users, and the sparse-matrix
        wrappers' per-call checks, like passes over (size,) arrays, cost more than that arithmetic.
        """
        if self.empty or (len(keys_a) == 0 and len(keys_b) == 0):
            return SparseScores.empty(), SparseScores.empty()
        keys = np.concatenate([np.asarray(keys_a, np.int64), np.asarray(keys_b, np.int64)])
        w = np.zeros((len(keys), 2), dtype=np.float32)
        w[: len(keys_a), 0] = weights_a
        w[len(keys_a):, 1] = weights_b
        inside = (keys >= 0) & (keys < self.size)
        keys, w = keys[inside], w[inside] * self._inv_sqrt[keys[inside], None]
        users, owner, ones = _rows_of(self._xt, keys)              # who touched each history item
        users, slot = np.unique(users, return_inverse=True)
        per_user = [np.bincount(slot, weights=w[owner, c] * ones, minlength=len(users)) for c in (0, 1)]
        items, owner, ones = _rows_of(self._x, users)              # everything those users touched
        if 4 * len(items) < self.size:  # few: sort them
            touched, slot = np.unique(items, return_inverse=True)
            sums = [np.bincount(slot, weights=per_user[c][owner] * ones, minlength=len(touched)) for c in (0, 1)]
        else:  # many: one pass over the catalog is cheaper than sorting
            dense = [np.bincount(items, weights=per_user[c][owner] * ones, minlength=self.size) for c in (0, 1)]
            touched = np.flatnonzero((dense[0] != 0) | (dense[1] != 0))
            sums = [d[touched] for d in dense]
        scale = self._inv_sqrt[touched]
        return SparseScores(touched, (sums[0] * scale).astype(np.float32)), \
            SparseScores(touched, (sums[1] * scale).astype(np.float32))

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
        a, b = a[ok_a], b[ok_b]
        # a dense (a, U) @ (U, b) product over U, the users of the b items: both sides are small
        users_b, owner_b, ones_b = _rows_of(self._xt, b)
        users, slot_b = np.unique(users_b, return_inverse=True)
        right = np.zeros((len(users), len(b)), dtype=np.float32)
        right[slot_b, owner_b] = ones_b
        users_a, owner_a, ones_a = _rows_of(self._xt, a)
        slot_a = np.minimum(np.searchsorted(users, users_a), len(users) - 1)
        shared = users[slot_a] == users_a
        left = np.zeros((len(a), len(users)), dtype=np.float32)
        left[owner_a[shared], slot_a[shared]] = ones_a[shared]
        co = left @ right
        co *= self._inv_sqrt[a][:, None] * self._inv_sqrt[b][None, :]
        out[np.ix_(ok_a, ok_b)] = co
        return out


def _rows_of(matrix: sparse.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The column indices stored in ``rows`` of a CSR matrix, which of ``rows`` each came from, and its value."""
    starts, ends = matrix.indptr[rows], matrix.indptr[rows + 1]
    lengths = (ends - starts).astype(np.int64)
    owner = np.repeat(np.arange(len(rows)), lengths)
    positions = np.arange(int(lengths.sum())) + np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return matrix.indices[positions].astype(np.int64), owner, matrix.data[positions]
