"""Item vectors and their FAISS index, kept in step with the catalog by change sequence.

:class:`ItemIndex` holds each live item's embedding (rows of one float32 matrix, by
surrogate key) and a :class:`core.index.VectorIndex` over them, plus ``seq``: the catalog
change it reflects. A snapshot is one folder written atomically (``faiss/``, ``vectors.npy``,
``keys.npy``, ``state.json``); a crash between a catalog commit and the next snapshot only
means the loader replays ``Catalog.changes_since(seq)``. The index kind follows the size:
exact below ``IndexConfig.exact_below`` items, HNSW above (re-made from the stored vectors,
without re-embedding, when upserts push a catalog across the line).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from apps.recommender.rwlock import ReadWriteLock
from core.atomic import atomic_directory
from core.index import IndexConfig, VectorIndex, VectorIndexError

log = logging.getLogger(__name__)

STATE_FORMAT = "textml.recommender.item_index/1"


class IndexSnapshotError(ValueError):
    """A snapshot that is missing, corrupt or made for another encoder; the caller rebuilds."""


class ItemIndex:
    """Vectors by surrogate key plus ANN search over them; every method is thread-safe.

    Reads (search, vectors) run concurrently with each other; a change waits for them and excludes them.
    """

    def __init__(self, dim: int, encoder_source: str, config: IndexConfig | None = None) -> None:
        self.dim = dim
        self.encoder_source = encoder_source
        self.config = config if config is not None else IndexConfig()
        self.seq = 0
        self._lock = ReadWriteLock()
        self._matrix = np.zeros((0, dim), dtype=np.float32)
        self._row_of: dict[int, int] = {}
        self._row_by_key = np.full(0, -1, dtype=np.int64)  # the same map as an array: vectorised lookups
        self._free: list[int] = []
        self._index = VectorIndex(dim, self.config)

    # ------------------------------------------------------------------ changes
    def build(self, keys: np.ndarray, vectors: np.ndarray, seq: int) -> ItemIndex:
        """Replace everything with ``vectors`` (n, dim) under ``keys`` (n,), reflecting catalog ``seq``."""
        keys = np.asarray(keys, dtype=np.int64)
        with self._lock.writing():
            self._matrix = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(keys), self.dim)
            self._row_of = {int(k): i for i, k in enumerate(keys)}
            self._reindex_rows()
            self._free = []
            self._index = VectorIndex(self.dim, self.config)
            if len(keys):
                self._index.build(self._matrix, keys)
            self.seq = seq
        return self

    def apply(self, seq: int, keys: np.ndarray, vectors: np.ndarray, deleted: np.ndarray = ()) -> None:
        """Upsert ``vectors`` under ``keys`` and drop ``deleted`` keys; the index now reflects ``seq``."""
        keys = np.asarray(keys, dtype=np.int64)
        deleted = np.asarray(deleted, dtype=np.int64)
        with self._lock.writing():
            if len(deleted):
                self._index.remove(deleted)
                for key in deleted.tolist():
                    row = self._row_of.pop(key, None)
                    if row is not None:
                        self._free.append(row)
                        self._row_by_key[key] = -1
            if len(keys):
                vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(keys), self.dim)
                self._index.add(vectors, keys)  # validates before the matrix changes
                for key, vector in zip(keys.tolist(), vectors, strict=True):
                    row = self._row_of.get(key)
                    if row is None:
                        row = self._free.pop() if self._free else self._grow()
                        self._row_of[key] = row
                        self._set_row(key, row)
                    self._matrix[row] = vector
            self.seq = max(self.seq, seq)
            self._maybe_change_kind()

    def _grow(self) -> int:
        used = len(self._matrix)
        grown = np.zeros((max(16, used * 2), self.dim), dtype=np.float32)
        grown[:used] = self._matrix
        self._free.extend(range(len(grown) - 1, used, -1))
        self._matrix = grown
        return used

    def _reindex_rows(self) -> None:
        size = max(self._row_of, default=-1) + 1
        self._row_by_key = np.full(size, -1, dtype=np.int64)
        if self._row_of:
            self._row_by_key[np.fromiter(self._row_of, np.int64, len(self._row_of))] = np.fromiter(
                self._row_of.values(), np.int64, len(self._row_of))

    def _set_row(self, key: int, row: int) -> None:
        if key >= len(self._row_by_key):  # grow geometrically: keys are assigned in increasing order
            grown = np.full(max(key + 1, 2 * len(self._row_by_key), 16), -1, dtype=np.int64)
            grown[: len(self._row_by_key)] = self._row_by_key
            self._row_by_key = grown
        self._row_by_key[key] = row

    def _maybe_change_kind(self) -> None:
        if self.config.kind != "auto" or len(self._row_of) == 0:
            return
        wanted = "flat" if len(self._row_of) < self.config.exact_below else "hnsw"
        if self._index.kind != wanted:
            log.info("catalog has %d items: re-making the index as %s", len(self._row_of), wanted)
            keys, vectors = self._live()
            self._index = VectorIndex(self.dim, self.config).build(vectors, keys)

    def _live(self) -> tuple[np.ndarray, np.ndarray]:
        keys = np.fromiter(self._row_of.keys(), dtype=np.int64, count=len(self._row_of))
        rows = np.fromiter(self._row_of.values(), dtype=np.int64, count=len(self._row_of))
        order = np.argsort(keys)
        return keys[order], self._matrix[rows[order]]

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return len(self._row_of)

    @property
    def kind(self) -> str:
        with self._lock.reading():
            return self._index.kind if len(self._row_of) else "empty"

    def has(self, key: int) -> bool:
        return key in self._row_of

    def has_many(self, keys: np.ndarray) -> np.ndarray:
        """(n,) bool: which of ``keys`` the index holds (negative keys, FAISS padding, are not held)."""
        keys = np.asarray(keys, dtype=np.int64)
        rows_by_key = self._row_by_key  # one reference: a concurrent write may swap in a grown array
        inside = (keys >= 0) & (keys < len(rows_by_key))
        out = np.zeros(len(keys), dtype=bool)
        out[inside] = rows_by_key[keys[inside]] >= 0
        return out

    def vectors(self, keys: list[int] | np.ndarray) -> np.ndarray:
        """(len(keys), dim) stored vectors (a copy); KeyError names a key the index does not hold."""
        keys = np.asarray(keys, dtype=np.int64).reshape(-1)
        with self._lock.reading():
            rows_by_key = self._row_by_key
            inside = (keys >= 0) & (keys < len(rows_by_key))
            rows = np.full(len(keys), -1, dtype=np.int64)
            rows[inside] = rows_by_key[keys[inside]]
            if (rows < 0).any():
                raise KeyError(int(keys[np.argmax(rows < 0)]))
            return self._matrix[rows]  # fancy indexing copies

    def search(self, queries: np.ndarray, k: int, ef_search: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(q, k) scores and keys, padded with -inf / -1 (see VectorIndex.search)."""
        with self._lock.reading():
            return self._index.search(queries, k, ef_search)

    def exact_scores(self, query: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Inner products of ``query`` (dim,) with the vectors of ``keys``: for filtered scans."""
        return self.vectors(keys) @ np.asarray(query, dtype=np.float32)

    def all_keys(self) -> np.ndarray:
        with self._lock.reading():
            return np.fromiter(self._row_of.keys(), dtype=np.int64, count=len(self._row_of))

    # ------------------------------------------------------------------ persistence
    def save(self, path: Path) -> None:
        """Write a snapshot folder atomically (a reader sees the previous snapshot or this one)."""
        with self._lock.reading():
            keys, vectors = self._live()
            state = {"format": STATE_FORMAT, "seq": self.seq, "dim": self.dim, "count": len(keys),
                     "encoder": self.encoder_source, "config": asdict(self.config)}
            index = self._index
            with atomic_directory(Path(path), replace=True) as staging:
                np.save(staging / "keys.npy", keys, allow_pickle=False)
                np.save(staging / "vectors.npy", vectors, allow_pickle=False)
                if len(keys):
                    index.save(staging / "faiss")
                (staging / "state.json").write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        log.info("saved the item index (%d items, seq %d) to %s", len(keys), self.seq, path)

    @classmethod
    def load(cls, path: Path, encoder_source: str, config: IndexConfig | None = None) -> ItemIndex:
        """Read a snapshot made with ``encoder_source``; IndexSnapshotError says why one cannot be used."""
        path = Path(path)
        try:
            state = json.loads((path / "state.json").read_text(encoding="utf-8"))
            keys = np.load(path / "keys.npy", allow_pickle=False)
            vectors = np.load(path / "vectors.npy", allow_pickle=False)
        except (OSError, ValueError) as error:
            raise IndexSnapshotError(f"no readable index snapshot at {path} ({error})") from error
        if state.get("format") != STATE_FORMAT or state.get("encoder") != encoder_source:
            raise IndexSnapshotError(f"the snapshot at {path} was made with encoder {state.get('encoder')!r}, "
                                     f"not {encoder_source!r}; the items must be re-embedded")
        if len(keys) != state.get("count") or vectors.shape != (len(keys), state.get("dim")):
            raise IndexSnapshotError(f"the snapshot at {path} is inconsistent: {len(keys)} keys, vectors "
                                     f"{vectors.shape}, card count {state.get('count')}")
        config = config if config is not None else IndexConfig()
        loaded = cls(int(state["dim"]), encoder_source, config)
        loaded._matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        loaded._row_of = {int(k): i for i, k in enumerate(keys.tolist())}
        loaded._reindex_rows()
        if len(keys):
            try:
                loaded._index = VectorIndex.load(path / "faiss", use_gpu=config.use_gpu)
                loaded._index.config = replace(loaded._index.config, **{
                    name: getattr(config, name) for name in ("hnsw_ef_search", "ivf_nprobe", "exact_below")})
            except VectorIndexError as error:
                raise IndexSnapshotError(str(error)) from error
            if not np.array_equal(loaded._index.ids(), np.sort(keys)):
                raise IndexSnapshotError(f"the snapshot at {path} holds different keys in FAISS and vectors.npy")
        loaded.seq = int(state["seq"])
        return loaded
