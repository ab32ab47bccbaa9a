"""Inner-product vector search with int64 ids, upserts and removal: the one FAISS wrapper the apps share.

The support bot retrieves knowledge-base passages and the recommender retrieves catalog items with it.
Callers pass L2-normalised float32 vectors, so inner product is cosine similarity. Three FAISS index
kinds sit behind one API:

* ``flat``: ``IndexIDMap2(IndexFlatIP)``, exact; ``remove_ids`` deletes rows.
* ``ivf``: ``IndexIVFFlat`` (inner product), trained on the vectors given to ``build``; ids are native
  and ``remove_ids`` deletes them from the inverted lists.
* ``hnsw``: ``IndexHNSWSQ`` with float16 storage by default (``IndexConfig.hnsw_storage``). A graph
  walk reads a few thousand stored vectors at random, so it is memory-bound: halving their size made
  searches ~1.4x faster on 100k x 384 vectors on a 2-core CPU (k=100 at ``efSearch`` 100: 0.44 against
  0.64 ms) at about the same recall@10 (0.958 against 0.961). FAISS cannot delete from an HNSW graph,
  so removed and upserted-over rows become tombstones that the graph search skips through an ``IDSelectorBitmap`` (see
  :meth:`VectorIndex._search_hnsw`); the graph is rebuilt from the live vectors once tombstones pass
  ``IndexConfig.hnsw_tombstone_fraction`` of the rows.

A saved index is a folder (``index.faiss``, ``ids.npy``, ``hnsw_rows.npy`` for HNSW, ``card.json``
with the sha256 of each file) written atomically; :meth:`VectorIndex.load` checks the fingerprints
before FAISS reads a byte, so a corrupt or truncated file is a :class:`VectorIndexError`, not a crash.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import numbers
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import faiss
import numpy as np

from core.atomic import atomic_directory

logger = logging.getLogger(__name__)

KINDS = ("auto", "flat", "hnsw", "ivf")
HNSW_STORAGES = {"float32": None, "fp16": faiss.ScalarQuantizer.QT_fp16, "sq8": faiss.ScalarQuantizer.QT_8bit}
CARD_FORMAT = "textml.vector_index/1"
_GPU_MAX_K = 2048  # FAISS GPU indexes answer at most k=2048; larger k is served by the CPU copy
_INT64_MAX = np.iinfo(np.int64).max
_FAISS_TYPES = {"flat": faiss.IndexIDMap2, "hnsw": (faiss.IndexHNSWFlat, faiss.IndexHNSWSQ), "ivf": faiss.IndexIVFFlat}


class VectorIndexError(ValueError):
    """Bad input to a vector index (dim, non-finite values, ids, k) or a missing/corrupt saved index."""


@dataclass(frozen=True)
class IndexConfig:
    """How to index. Defaults suit 10^3 to 10^7 normalised sentence embeddings.

    ``kind="auto"`` picks ``flat`` below ``exact_below`` vectors and ``hnsw`` above. Exact search costs
    n*dim multiply-adds per query: at 50k x 384 that is ~20M, a few milliseconds on a CPU, with perfect
    recall, so approximation buys nothing there. Above it HNSW keeps queries sub-millisecond at
    recall ~0.95+ and, unlike IVF, needs no training, so it stays good as a catalog grows by upserts.
    The kind is picked by :meth:`VectorIndex.build`; later ``add`` calls keep it.

    ``ivf_nlist=None`` means ``round(4 * sqrt(n))`` lists, capped at ``n // 39`` (FAISS k-means wants
    39+ training points per centroid) and at least 1. ``use_gpu=None`` uses a GPU when this FAISS
    build has GPU support and one is visible; flat and IVF search there, HNSW stays on the CPU (FAISS
    has no GPU HNSW). ``hnsw_tombstone_fraction`` is the share of dead HNSW rows that triggers a rebuild.
    ``hnsw_storage`` is how the graph stores vectors: ``fp16`` (default; scores exact to ~1e-3),
    ``float32`` (exact scores, twice the memory, slower walks) or ``sq8`` (a quarter, slightly lower recall).
    """

    kind: str = "auto"
    exact_below: int = 50_000
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 64
    hnsw_storage: str = "fp16"
    ivf_nlist: int | None = None
    ivf_nprobe: int = 16
    use_gpu: bool | None = None
    hnsw_tombstone_fraction: float = 0.2

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise VectorIndexError(f"kind={self.kind!r} is not a known index kind; use one of {KINDS}")
        for name, low in (
            ("exact_below", 0),
            ("hnsw_m", 2),
            ("hnsw_ef_construction", 1),
            ("hnsw_ef_search", 1),
            ("ivf_nprobe", 1),
        ):
            _check_int(getattr(self, name), name, low)
        if self.ivf_nlist is not None:
            _check_int(self.ivf_nlist, "ivf_nlist", 1)
        if self.hnsw_storage not in HNSW_STORAGES:
            raise VectorIndexError(
                f"hnsw_storage={self.hnsw_storage!r} is not a known storage; use one of {tuple(HNSW_STORAGES)}"
            )
        if not 0.0 < self.hnsw_tombstone_fraction <= 1.0:
            raise VectorIndexError(
                f"hnsw_tombstone_fraction={self.hnsw_tombstone_fraction!r} is out of range; expected 0 < f <= 1"
            )
        if self.use_gpu not in (None, True, False):
            raise VectorIndexError(f"use_gpu={self.use_gpu!r} is not allowed; use None (auto), True or False")


def _check_int(value: object, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise VectorIndexError(f"{name}={value!r} is out of range; expected an integer >= {low}")
    return int(value)


def _gpu_present() -> bool:
    """True when this FAISS build has GPU support and sees at least one GPU."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


_gpu_resources = None


def _to_gpu(index: faiss.Index) -> faiss.Index:
    """A GPU copy of ``index`` on device 0, sharing one StandardGpuResources (it reserves scratch memory)."""
    global _gpu_resources
    if _gpu_resources is None:
        _gpu_resources = faiss.StandardGpuResources()
    return faiss.index_cpu_to_gpu(_gpu_resources, 0, index)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class VectorIndex:
    """Inner-product search over float32 vectors (callers pass L2-normalised vectors for cosine), with int64 ids.

    Ids are unique and >= 0 (-1 marks padding in results). ``add`` upserts: a known id's old vector is
    replaced, and ``search`` never returns a removed id or a stale vector. Not safe for concurrent
    mutation from several threads.

    Example::

        index = VectorIndex(384).build(vectors, ids)        # (n, 384) float32, (n,) int64
        scores, found = index.search(query_vectors, k=10)   # (q, 10) float32 desc, (q, 10) int64
    """

    def __init__(self, dim: int, config: IndexConfig | None = None) -> None:
        self.dim = dim
        self.config = config if config is not None else IndexConfig()
        self._index: faiss.Index | None = None  # the authoritative CPU index
        self._kind: str | None = None
        self._ids = np.empty(0, dtype=np.int64)  # live ids, sorted
        self._rows: np.ndarray | None = None  # HNSW only: id of each graph row, -1 for a tombstone
        self._on_gpu = False
        self._gpu_index: faiss.Index | None = None  # search copy; None after any change, re-made lazily

    # ------------------------------------------------------------------ building and updating
    def build(self, vectors: np.ndarray, ids: np.ndarray) -> VectorIndex:
        """Replace the contents with ``vectors`` (n, dim) and their unique ``ids`` (n,); returns self."""
        dim = _check_int(self.dim, "dim", 1)
        vectors, ids = self._check_vectors(vectors), self._check_ids(ids, len(vectors))
        n, cfg = len(vectors), self.config
        kind = cfg.kind if cfg.kind != "auto" else ("flat" if n < cfg.exact_below else "hnsw")
        on_gpu = self._resolve_gpu(kind, cfg.use_gpu)
        self._index, self._kind, self._ids, self._rows = self._new_index(kind, vectors), kind, np.sort(ids), None
        if kind == "hnsw":
            self._index.add(vectors)
            self._rows = ids.copy()
        else:
            self._index.add_with_ids(vectors, ids)
        self._on_gpu, self._gpu_index = on_gpu, None
        logger.info("built a %s index of %d vectors (dim %d)%s", kind, n, dim, " on the GPU" if self._on_gpu else "")
        return self

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Upsert ``vectors`` (n, dim) under ``ids`` (n,); on a never-built index this is :meth:`build`."""
        if self._index is None:
            self.build(vectors, ids)
            return
        vectors, ids = self._check_vectors(vectors), self._check_ids(ids, len(vectors))
        if len(ids) == 0:
            return
        known = ids[np.isin(ids, self._ids)]
        if self._kind == "hnsw":
            self._rows[np.isin(self._rows, known)] = -1  # tombstone the stale vectors of upserted ids
            self._index.add(vectors)
            self._rows = np.concatenate([self._rows, ids])
        else:
            if len(known):
                self._index.remove_ids(known)
            self._index.add_with_ids(vectors, ids)
        self._ids = np.union1d(self._ids, ids)
        self._changed()

    def remove(self, ids: np.ndarray) -> int:
        """Remove ``ids`` (an int or (m,) ints); unknown ids are ignored. Returns how many were removed."""
        ids = np.unique(self._check_ids(np.atleast_1d(np.asarray(ids)), None, storing=False))
        gone = ids[np.isin(ids, self._ids)]
        if self._index is None or len(gone) == 0:
            return 0
        if self._kind == "hnsw":
            self._rows[np.isin(self._rows, gone)] = -1
        else:
            self._index.remove_ids(gone)
        self._ids = np.setdiff1d(self._ids, gone, assume_unique=True)
        self._changed()
        return len(gone)

    def _changed(self) -> None:
        self._gpu_index = None
        if self._kind == "hnsw":
            dead = len(self._rows) - len(self._ids)
            if dead and dead >= self.config.hnsw_tombstone_fraction * len(self._rows):
                self._compact()

    def _compact(self) -> None:
        """Rebuild the HNSW graph from the live vectors (stored in the index, so reconstructable)."""
        live = np.flatnonzero(self._rows >= 0)
        vectors = self._index.reconstruct_batch(live) if len(live) else np.empty((0, self.dim), np.float32)
        logger.info("compacting HNSW index: %d live of %d rows", len(live), len(self._rows))
        self._index = self._new_index("hnsw", vectors)
        self._index.add(vectors)
        self._rows = self._rows[live]

    def _new_index(self, kind: str, vectors: np.ndarray) -> faiss.Index:
        """An empty index of ``kind`` (IVF is trained on ``vectors`` (n, dim))."""
        cfg, dim, n = self.config, self.dim, len(vectors)
        if kind == "flat":
            return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        if kind == "hnsw":
            quantizer = HNSW_STORAGES[cfg.hnsw_storage]
            if quantizer is None:
                index = faiss.IndexHNSWFlat(dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            else:
                index = faiss.IndexHNSWSQ(dim, quantizer, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
                if not index.is_trained:  # sq8 learns each dimension's range from the build vectors
                    if n == 0:
                        raise VectorIndexError(
                            f"hnsw_storage={cfg.hnsw_storage!r} is trained on the build vectors and needs at "
                            "least one; pass vectors to build(), or use hnsw_storage='fp16'"
                        )
                    index.train(vectors)
            index.hnsw.efConstruction = cfg.hnsw_ef_construction
            index.hnsw.efSearch = cfg.hnsw_ef_search
            return index
        nlist = cfg.ivf_nlist or max(1, min(round(4 * math.sqrt(n)), n // 39))
        if n < nlist or n == 0:
            raise VectorIndexError(
                f"an IVF index with ivf_nlist={nlist} is trained on the build vectors and needs at least "
                f"max(nlist, 1) of them; got n={n}; pass more vectors, a smaller ivf_nlist, or kind='flat'"
            )
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = min(cfg.ivf_nprobe, nlist)
        return index

    def _resolve_gpu(self, kind: str, use_gpu: bool | None) -> bool:
        present = _gpu_present()
        if use_gpu and not present:
            raise VectorIndexError(
                f"use_gpu=True but this FAISS build has no GPU support or sees no GPU (faiss {faiss.__version__}); "
                "install faiss with GPU support (the `gpu` extra) or pass use_gpu=None to fall back to the CPU"
            )
        if not (present if use_gpu is None else use_gpu):
            return False
        if kind == "hnsw":
            logger.info("FAISS has no GPU HNSW: this HNSW index searches on the CPU (use kind='flat' or 'ivf' for GPU)")
            return False
        return True

    # ------------------------------------------------------------------ searching
    def search(self, queries: np.ndarray, k: int, ef_search: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best ids per query by inner product.

        ``queries`` is (q, dim), or one (dim,) vector treated as q=1. Returns ``scores`` (q, k) float32
        in descending order and ``ids`` (q, k) int64; when fewer than k are found the rows are padded
        with -inf / -1. ``ef_search`` overrides ``IndexConfig.hnsw_ef_search`` for this call (HNSW
        only; at least k is used): a caller that only gathers candidates can trade recall for time.
        """
        _check_int(self.dim, "dim", 1)
        queries = self._check_vectors(queries, what="queries", single_ok=True)
        k = _check_int(k, "k", 1)
        if ef_search is not None:
            _check_int(ef_search, "ef_search", 1)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        found = np.full((len(queries), k), -1, dtype=np.int64)
        kk = min(k, len(self))  # asking FAISS for more than it holds only adds padding
        if kk == 0 or len(queries) == 0:
            return scores, found
        if self._kind == "hnsw":
            got_scores, got_ids = self._search_hnsw(queries, kk, ef_search)
        else:
            got_scores, got_ids = self._searcher(kk).search(queries, kk)
        got_scores[got_ids < 0] = -np.inf
        scores[:, :kk], found[:, :kk] = got_scores, got_ids
        return scores, found

    def _searcher(self, k: int) -> faiss.Index:
        if not self._on_gpu or k > _GPU_MAX_K:
            return self._index
        if self._gpu_index is None:
            self._gpu_index = _to_gpu(self._index)
            if self._kind == "ivf":
                self._gpu_index.nprobe = self._index.nprobe
        return self._gpu_index

    def _search_hnsw(self, queries: np.ndarray, k: int, ef_search: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
        # Tombstoned rows stay in the graph (FAISS HNSW cannot delete) and are still walked through, but
        # the selector keeps them out of the results, so each query gets up to k live rows without
        # guessing an over-fetch factor. Compaction bounds how many dead rows the walk wastes time on.
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(ef_search if ef_search is not None else self.config.hnsw_ef_search, k)
        live = self._rows >= 0
        if not live.all():
            bitmap = np.packbits(live, bitorder="little")  # kept alive for the duration of the search
            selector = faiss.IDSelectorBitmap(len(live), faiss.swig_ptr(bitmap))
            params.sel = selector
        scores, rows = self._index.search(queries, k, params=params)
        ids = np.where(rows >= 0, self._rows[np.maximum(rows, 0)], -1)  # a dead row maps to -1 as well
        return scores, ids

    # ------------------------------------------------------------------ inspection
    def __len__(self) -> int:
        return len(self._ids)

    @property
    def kind(self) -> str:
        """The resolved kind: "flat", "hnsw" or "ivf"."""
        if self._kind is None:
            raise VectorIndexError("the index has not been built, so it has no kind yet; call build(vectors, ids)")
        return self._kind

    def ids(self) -> np.ndarray:
        """The stored ids, (n,) int64, ascending (a copy)."""
        return self._ids.copy()

    # ------------------------------------------------------------------ validation
    def _check_vectors(self, vectors: np.ndarray, what: str = "vectors", single_ok: bool = False) -> np.ndarray:
        """Vectors as a C-contiguous (n, dim) float32 array of finite values (one (dim,) vector if single_ok)."""
        try:
            array = np.asarray(vectors)
        except (ValueError, TypeError) as error:
            raise VectorIndexError(
                f"{what} are not a rectangular numeric array ({error}); pass a (n, {self.dim}) float32 numpy array"
            ) from error
        if single_ok and array.ndim == 1:
            array = array[None, :]
        if array.dtype.kind not in "fiu":
            raise VectorIndexError(
                f"{what} have dtype {array.dtype}; expected real numbers; convert with np.asarray(x, dtype=np.float32)"
            )
        if array.ndim != 2 or array.shape[1] != self.dim:
            raise VectorIndexError(
                f"{what} have shape {array.shape}; expected (n, {self.dim}) for this dim={self.dim} "
                "index; check the encoder matches the index (vectors[None, :] for one vector)"
            )
        array = np.ascontiguousarray(array, dtype=np.float32)
        bad = np.flatnonzero(~np.isfinite(array).all(axis=1))
        if len(bad):
            raise VectorIndexError(
                f"{what} rows {bad[:5].tolist()} ({len(bad)} in all) contain NaN or inf; "
                "drop or fix them (a zero vector L2-normalised gives NaN)"
            )
        return array

    def _check_ids(self, ids: np.ndarray, n: int | None, storing: bool = True) -> np.ndarray:
        """Ids as (n,) int64: integers, and when storing, >= 0 and unique within the call."""
        array = np.asarray(ids)
        if array.dtype.kind == "O" and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in array.flat
        ):
            array = array.astype(np.int64)
        elif array.size == 0:
            array = array.astype(np.int64)
        if array.dtype.kind not in "iu":
            sample = array.flat[0] if array.size else None
            raise VectorIndexError(
                f"ids have dtype {array.dtype} (e.g. {sample!r}); expected integers; convert "
                "with np.asarray(ids, dtype=np.int64)"
            )
        if array.ndim != 1 or (n is not None and len(array) != n):
            raise VectorIndexError(
                f"ids have shape {array.shape}; expected ({n if n is not None else 'm'},), one id per vector"
            )
        if array.dtype.kind == "u" and array.size and array.max() > _INT64_MAX:
            raise VectorIndexError(f"id {array.max()} does not fit in int64; map ids to 0..2**63-1")
        array = array.astype(np.int64)
        if storing and array.size:
            if array.min() < 0:
                raise VectorIndexError(f"id {array.min()} is negative; ids must be >= 0 (-1 marks padding in results)")
            values, counts = np.unique(array, return_counts=True)
            if (counts > 1).any():
                raise VectorIndexError(
                    f"ids {values[counts > 1][:5].tolist()} appear more than once in one call; "
                    "each id must be unique (deduplicate, keeping the vector you want)"
                )
        return array

    # ------------------------------------------------------------------ persistence
    def save(self, path: Path) -> None:
        """Write the index as a folder; saving over an existing folder swaps it atomically."""
        if self._index is None:
            raise VectorIndexError(f"cannot save to {path}: the index has not been built; call build(vectors, ids)")
        with atomic_directory(Path(path), replace=True) as staging:
            faiss.write_index(self._index, str(staging / "index.faiss"))
            np.save(staging / "ids.npy", self._ids, allow_pickle=False)
            if self._rows is not None:
                np.save(staging / "hnsw_rows.npy", self._rows, allow_pickle=False)
            files = {p.name: _sha256(p) for p in sorted(staging.iterdir())}
            card = {
                "format": CARD_FORMAT,
                "dim": self.dim,
                "kind": self._kind,
                "count": len(self),
                "config": asdict(self.config),
                "sha256": files["index.faiss"],
                "files": files,
                "faiss_version": faiss.__version__,
                "numpy_version": np.__version__,
            }
            (staging / "card.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path, use_gpu: bool | None = None) -> VectorIndex:
        """Read a saved index, verifying every file's sha256 first. ``use_gpu`` as in :class:`IndexConfig`."""
        path = Path(path)
        card_path = path / "card.json"
        try:
            card = json.loads(card_path.read_text(encoding="utf-8"))
            files, kind, count = dict(card["files"]), card["kind"], int(card["count"])
            config = replace(IndexConfig(**card["config"]), use_gpu=use_gpu)
            if card["format"] != CARD_FORMAT or kind not in KINDS[1:] or card["sha256"] != files["index.faiss"]:
                raise ValueError(f"format {card['format']!r}, kind {kind!r}")
        except OSError as error:
            raise VectorIndexError(
                f"no saved index at {path}: {card_path} is missing or unreadable ({error}); pass "
                "the folder written by VectorIndex.save"
            ) from error
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise VectorIndexError(
                f"{card_path} is not a valid {CARD_FORMAT} card ({error!r}); re-save the index with VectorIndex.save"
            ) from error
        for name, expected in files.items():
            if not (path / name).is_file():
                raise VectorIndexError(
                    f"{path / name} is missing but {card_path} lists it (sha256 {expected}); "
                    "restore the folder or rebuild and re-save the index"
                )
            actual = _sha256(path / name)
            if actual != expected:
                raise VectorIndexError(
                    f"{path / name} has sha256 {actual} but {card_path} records {expected}: the "
                    "file is corrupt or truncated; restore it or rebuild and re-save the index"
                )
        loaded = cls(int(card["dim"]), config)
        try:
            loaded._index = faiss.read_index(str(path / "index.faiss"))
            loaded._ids = np.load(path / "ids.npy", allow_pickle=False).astype(np.int64)
            loaded._rows = np.load(path / "hnsw_rows.npy", allow_pickle=False) if kind == "hnsw" else None
        except (RuntimeError, ValueError, OSError) as error:
            raise VectorIndexError(
                f"{path} matches its fingerprints but cannot be read ({error}); it was written "
                f"by faiss {card.get('faiss_version')}, this is {faiss.__version__}"
            ) from error
        index, rows = loaded._index, loaded._rows
        held = int((rows >= 0).sum()) if rows is not None else index.ntotal
        if (
            not isinstance(index, _FAISS_TYPES[kind])
            or index.d != loaded.dim
            or held != count
            or len(loaded._ids) != count
            or (rows is not None and len(rows) != index.ntotal)
        ):
            raise VectorIndexError(
                f"{path} is inconsistent: the card says a {kind} index, dim={loaded.dim}, count={count}; the files "
                f"hold a {type(index).__name__}, dim={index.d}, {held} vectors, {len(loaded._ids)} ids; "
                "rebuild and re-save"
            )
        loaded._kind = kind
        if kind == "ivf":
            loaded._index.nprobe = min(config.ivf_nprobe, loaded._index.nlist)
        loaded._on_gpu = loaded._resolve_gpu(kind, use_gpu)
        return loaded
