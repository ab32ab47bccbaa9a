"""The cold-candidate channel: items with few interactions, scanned exactly by text similarity.

New and niche items rarely reach the candidate pool through popularity, co-occurrence or the
top of an ANN list, because the rest of the catalog crowds them out. The pool holds the
vectors of up to ``cold_pool_max`` items with fewer than ``cold_below`` interactions (past the cap, the
last inserted: a cost cap for very large catalogs, not a ranking signal) as one
matrix, so one matrix-vector product finds the ``n`` nearest cold items exactly: at 10k
items x 384 dims that is ~4M multiply-adds, well under a millisecond on one core, and
cheaper than a deep HNSW search that would only find the cold items among the first few
hundred neighbours overall.

A pool is made for one (index state, statistics) pair: :func:`cold_pool_for` returns the
cached pool while the index's ``seq`` and the statistics object are unchanged, so an upsert
(a new item is cold) or a new interaction log is reflected at the next request.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import numpy as np

from apps.recommender.interactions import InteractionStats
from apps.recommender.item_index import ItemIndex


@dataclass(frozen=True)
class ColdPool:
    """Keys (c,) and unit vectors (c, dim) of cold items, plus what they were made from."""

    keys: np.ndarray
    matrix: np.ndarray
    index_ref: weakref.ref  # the index and statistics it was made from (weak: a replaced index may go)
    index_seq: int
    stats_ref: weakref.ref

    @classmethod
    def build(cls, index: ItemIndex, stats: InteractionStats, cold_below: float, limit: int) -> ColdPool:
        seq = index.seq  # read first: a write landing meanwhile leaves the pool stale, so it is re-made
        keys = np.sort(index.all_keys())
        keys = keys[stats.popularity(keys) < cold_below][-limit:] if limit > 0 else keys[:0]
        matrix = index.vectors(keys) if len(keys) else np.zeros((0, index.dim), np.float32)
        return cls(keys, matrix, weakref.ref(index), seq, weakref.ref(stats))

    def fits(self, index: ItemIndex, stats: InteractionStats) -> bool:
        return self.index_ref() is index and self.index_seq == index.seq and self.stats_ref() is stats

    def search(self, vector: np.ndarray, n: int) -> np.ndarray:
        """Keys of the ``n`` cold items most similar to ``vector`` (dim,), unordered.

        No lead for items nobody has interacted with: on a catalog built from an interaction log such an item
        is there only because of an interaction the log does not show (see apps.recommender.ranking)."""
        if not len(self.keys) or n <= 0:
            return np.zeros(0, dtype=np.int64)
        scores = self.matrix @ np.asarray(vector, dtype=np.float32)  # (c,)
        return _best(self.keys, scores, n)


def _best(keys: np.ndarray, scores: np.ndarray, n: int) -> np.ndarray:
    if n <= 0:
        return keys[:0]
    if len(keys) <= n:
        return keys.copy()
    return keys[np.argpartition(-scores, n - 1)[:n]]


class ColdPoolCache:
    """The current pool, re-made when the index or the statistics it was made from change (thread-safe)."""

    def __init__(self, cold_below: float, limit: int) -> None:
        self.cold_below, self.limit = cold_below, limit
        self._pool: ColdPool | None = None
        self._lock = threading.Lock()

    def get(self, index: ItemIndex, stats: InteractionStats) -> ColdPool:
        pool = self._pool
        if pool is not None and pool.fits(index, stats):
            return pool
        with self._lock:
            pool = self._pool
            if pool is None or not pool.fits(index, stats):
                pool = ColdPool.build(index, stats, self.cold_below, self.limit)
                self._pool = pool
            return pool
