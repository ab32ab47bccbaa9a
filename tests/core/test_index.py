"""VectorIndex: exact and approximate search against numpy brute force, upserts, removal, saving, bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import faiss
import numpy as np
import pytest

from core import index as index_module
from core.atomic import is_staging_leftover
from core.index import IndexConfig, VectorIndex, VectorIndexError

DIM = 32
# Small sets: IVF gets ~7 lists and probes them all, HNSW a small graph, so results are exact here.
SMALL_CONFIGS = {
    "flat": IndexConfig(kind="flat"),
    "hnsw": IndexConfig(kind="hnsw", hnsw_m=16),
    "ivf": IndexConfig(kind="ivf"),
}
KINDS = list(SMALL_CONFIGS)


def unit_vectors(n: int, seed: int, dim: int = DIM) -> np.ndarray:
    """(n, dim) float32 L2-normalised random vectors."""
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = queries @ vectors.T  # (q, n)
    order = np.argsort(-scores, axis=1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), ids[order]


@pytest.fixture(scope="module")
def small() -> tuple[np.ndarray, np.ndarray]:
    return unit_vectors(300, seed=1), np.arange(300, dtype=np.int64) * 10 + 5


def built(kind: str, vectors: np.ndarray, ids: np.ndarray) -> VectorIndex:
    return VectorIndex(DIM, SMALL_CONFIGS[kind]).build(vectors, ids)


def test_flat_returns_the_exact_neighbours(small: tuple[np.ndarray, np.ndarray]) -> None:
    vectors, ids = small
    queries = unit_vectors(20, seed=2)
    scores, found = built("flat", vectors, ids).search(queries, k=7)
    want_scores, want_ids = brute_force(vectors, ids, queries, 7)
    assert scores.dtype == np.float32 and found.dtype == np.int64 and found.shape == (20, 7)
    np.testing.assert_array_equal(found, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)
    assert (np.diff(scores, axis=1) <= 0).all()


@pytest.mark.parametrize(
    "config",
    [
        IndexConfig(kind="hnsw"),
        # uniform random vectors are IVF's worst case (no clusters); 48 of 128 lists reaches 0.9
        IndexConfig(kind="ivf", ivf_nprobe=48),
    ],
    ids=["hnsw", "ivf"],
)
def test_approximate_kinds_reach_recall_at_10(config: IndexConfig) -> None:
    vectors, ids = unit_vectors(5000, seed=3), np.arange(5000, dtype=np.int64)
    queries = unit_vectors(100, seed=4)
    _, found = VectorIndex(DIM, config).build(vectors, ids).search(queries, k=10)
    _, exact = brute_force(vectors, ids, queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact, strict=True)])
    assert recall >= 0.9


def test_auto_picks_flat_below_the_threshold_and_hnsw_above() -> None:
    config = IndexConfig(exact_below=100, hnsw_m=8)
    assert VectorIndex(DIM, config).build(unit_vectors(99, 5), np.arange(99)).kind == "flat"
    assert VectorIndex(DIM, config).build(unit_vectors(100, 5), np.arange(100)).kind == "hnsw"


@pytest.mark.parametrize("kind", KINDS)
def test_upsert_replaces_the_vector_of_a_known_id(kind: str, small: tuple[np.ndarray, np.ndarray]) -> None:
    vectors, ids = small
    index = built(kind, vectors, ids)
    fresh = unit_vectors(2, seed=6)
    index.add(np.vstack([fresh[0], unit_vectors(1, seed=7)]), np.array([ids[0], 99_999]))  # one upsert, one new
    assert len(index) == len(ids) + 1
    scores, found = index.search(fresh[0], k=1)
    tolerance = 2e-3 if kind == "hnsw" else 1e-5  # HNSW stores float16 by default
    assert found[0, 0] == ids[0] and scores[0, 0] == pytest.approx(1.0, abs=tolerance)
    # the stale vector of ids[0] is gone: querying it finds ids[0] only through the new vector
    scores, found = index.search(vectors[0], k=len(index))
    assert found[0, 0] != ids[0]
    assert scores[0, list(found[0]).index(ids[0])] == pytest.approx(float(vectors[0] @ fresh[0]), abs=tolerance)
    assert len(set(found[0])) == len(index)  # no id twice


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("share", [0.05, 0.5], ids=["few", "many"])  # HNSW: tombstones kept / compacted
def test_removed_ids_never_come_back(kind: str, share: float, small: tuple[np.ndarray, np.ndarray]) -> None:
    vectors, ids = small
    index = built(kind, vectors, ids)
    gone = ids[: int(share * len(ids))]
    assert index.remove(np.concatenate([gone, [123_456_789]])) == len(gone)  # unknown ids ignored
    assert index.remove(gone[:3]) == 0
    assert len(index) == len(ids) - len(gone) and not np.isin(gone, index.ids()).any()
    scores, found = index.search(vectors[: len(gone) + 5], k=len(ids))  # ask for more than are left
    assert not np.isin(found, gone).any()
    assert (found[:, len(index) :] == -1).all() and np.isneginf(scores[:, len(index) :]).all()
    if kind == "hnsw" and share > index.config.hnsw_tombstone_fraction:
        assert len(index._rows) == len(index)  # compacted: no tombstones left


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip_gives_identical_results(
    kind: str, small: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    vectors, ids = small
    index = built(kind, vectors, ids)
    index.remove(ids[:10])  # HNSW keeps these as tombstones, which must survive the round trip
    index.add(unit_vectors(2, seed=8), np.array([ids[20], 77_777]))
    index.save(tmp_path / "idx")
    loaded = VectorIndex.load(tmp_path / "idx", use_gpu=False)
    queries = unit_vectors(30, seed=9)
    for got, want in zip(loaded.search(queries, 12), index.search(queries, 12), strict=True):
        np.testing.assert_array_equal(got, want)
    assert loaded.kind == kind and len(loaded) == len(index)
    np.testing.assert_array_equal(loaded.ids(), index.ids())


def test_saving_over_an_existing_folder_replaces_it(small: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    vectors, ids = small
    built("flat", vectors, ids).save(tmp_path / "idx")
    built("hnsw", vectors[:50], ids[:50]).save(tmp_path / "idx")
    loaded = VectorIndex.load(tmp_path / "idx")
    assert loaded.kind == "hnsw" and len(loaded) == 50
    assert not [p for p in tmp_path.iterdir() if is_staging_leftover(p)]


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_index_file_is_refused(damage: str, small: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    built("flat", *small).save(tmp_path / "idx")
    target = tmp_path / "idx" / "index.faiss"
    data = bytearray(target.read_bytes())
    if damage == "flip":
        data[100:108] = bytes(b ^ 0xFF for b in data[100:108])
    else:
        data = data[: len(data) // 2]
    target.write_bytes(bytes(data))
    with pytest.raises(VectorIndexError, match=r"index\.faiss has sha256 [0-9a-f]{64} but .*records [0-9a-f]{64}"):
        VectorIndex.load(tmp_path / "idx")


def test_missing_card_or_file_is_refused(small: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    built("hnsw", *small).save(tmp_path / "idx")
    (tmp_path / "idx" / "hnsw_rows.npy").unlink()
    with pytest.raises(VectorIndexError, match=r"hnsw_rows\.npy is missing"):
        VectorIndex.load(tmp_path / "idx")
    (tmp_path / "idx" / "card.json").unlink()
    with pytest.raises(VectorIndexError, match=r"no saved index at .*card\.json is missing"):
        VectorIndex.load(tmp_path / "idx")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "card.json").write_text("{not json")
    with pytest.raises(VectorIndexError, match="not a valid"):
        VectorIndex.load(tmp_path / "bad")


def test_failed_save_leaves_the_previous_index_intact(
    small: tuple[np.ndarray, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vectors, ids = small
    first = built("flat", vectors, ids)
    first.save(tmp_path / "idx")

    def broken_write(index: faiss.Index, path: str) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(faiss, "write_index", broken_write)
    with pytest.raises(RuntimeError, match="disk full"):
        built("flat", vectors[:10], ids[:10]).save(tmp_path / "idx")
    loaded = VectorIndex.load(tmp_path / "idx")
    assert len(loaded) == len(ids)
    np.testing.assert_array_equal(loaded.search(vectors[:5], 3)[1], first.search(vectors[:5], 3)[1])
    assert not [p for p in tmp_path.iterdir() if is_staging_leftover(p)]


def test_single_query_empty_index_and_add_before_build() -> None:
    index = VectorIndex(DIM, IndexConfig(kind="flat"))
    scores, found = index.search(unit_vectors(1, 10)[0], k=3)
    assert found.tolist() == [[-1, -1, -1]] and np.isneginf(scores).all() and len(index) == 0
    assert index.remove([1, 2]) == 0
    index.add(unit_vectors(4, 11), np.arange(4))  # builds
    assert index.kind == "flat" and index.search(unit_vectors(4, 11)[2], k=1)[1].tolist() == [[2]]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda ix, v: ix.build(v[:, :16], np.arange(5)), r"shape \(5, 16\); expected \(n, 32\)"),
        (lambda ix, v: ix.build(np.where(np.eye(5, 32) > 0, np.nan, v), np.arange(5)), r"rows \[0, 1, 2, 3, 4\]"),
        (lambda ix, v: ix.build(v * np.inf, np.arange(5)), "NaN or inf"),
        (lambda ix, v: ix.build(v, np.array(list("abcde"))), r"dtype <U1 \(e\.g\. np\.str_\('a'\)\)"),
        (lambda ix, v: ix.build(v, np.array([1.5, 2, 3, 4, 5])), "dtype float64"),
        (lambda ix, v: ix.build(v, np.array([1, 2, 3, 2, 1])), r"ids \[1, 2\] appear more than once"),
        (lambda ix, v: ix.build(v, np.arange(4)), r"ids have shape \(4,\); expected \(5,\)"),
        (lambda ix, v: ix.build(v, np.array([0, 1, 2, 3, -4])), "id -4 is negative"),
        (lambda ix, v: ix.build(v, np.arange(5)).search(v, 0), "k=0 is out of range"),
        (lambda ix, v: ix.build(v, np.arange(5)).search(v, "3"), "k='3' is out of range"),
        (lambda ix, v: ix.build(v, np.arange(5)).search(v[:, :31], 1), r"queries have shape \(5, 31\)"),
        (lambda ix, v: ix.build(v, np.arange(5)).add(v[:2], [7, 7]), r"ids \[7\] appear more than once"),
        (lambda ix, v: VectorIndex(0).build(v, np.arange(5)), "dim=0 is out of range"),
        (
            lambda ix, v: VectorIndex(DIM, IndexConfig(kind="ivf", ivf_nlist=8)).build(v, np.arange(5)),
            "ivf_nlist=8 .* got n=5",
        ),
        (lambda ix, v: IndexConfig(kind="annoy"), "kind='annoy' is not a known index kind"),
        (lambda ix, v: IndexConfig(ivf_nprobe=0), "ivf_nprobe=0 is out of range"),
        (lambda ix, v: ix.kind, "has not been built"),
    ],
)
def test_bad_input_names_the_value(call, message: str) -> None:
    with pytest.raises(VectorIndexError, match=message):
        call(VectorIndex(DIM, IndexConfig(kind="flat")), unit_vectors(5, 12))


@pytest.mark.skipif(faiss.get_num_gpus() > 0, reason="a GPU is present")
def test_use_gpu_true_without_a_gpu_is_an_error() -> None:
    with pytest.raises(VectorIndexError, match="use_gpu=True but this FAISS build"):
        VectorIndex(DIM, IndexConfig(use_gpu=True)).build(unit_vectors(5, 13), np.arange(5))


def test_gpu_copy_is_refreshed_after_changes_and_hnsw_stays_on_cpu(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, small: tuple[np.ndarray, np.ndarray]
) -> None:
    """Without a GPU here, a CPU clone stands in for the GPU copy to check it never serves stale data."""
    vectors, ids = small
    monkeypatch.setattr(index_module, "_gpu_present", lambda: True)
    monkeypatch.setattr(index_module, "_to_gpu", faiss.clone_index)
    for kind in ("flat", "ivf"):
        index = built(kind, vectors, ids)
        assert index._on_gpu and index.search(vectors[0], 1)[1][0, 0] == ids[0]
        index.remove(ids[:1])
        assert index.search(vectors[0], 1)[1][0, 0] != ids[0]
        index.add(vectors[:1], ids[:1])
        assert index.search(vectors[0], 1)[1][0, 0] == ids[0]
    with caplog.at_level(logging.INFO, logger="core.index"):
        assert not built("hnsw", vectors, ids)._on_gpu
    assert "no GPU HNSW" in caplog.text


@pytest.mark.skipif(faiss.get_num_gpus() == 0, reason="needs a GPU and faiss with GPU support")
def test_real_gpu_matches_cpu(small: tuple[np.ndarray, np.ndarray]) -> None:
    vectors, ids = small
    queries = unit_vectors(10, seed=14)
    for kind in ("flat", "ivf"):
        gpu = VectorIndex(DIM, IndexConfig(kind=kind, use_gpu=True)).build(vectors, ids)
        cpu = VectorIndex(DIM, IndexConfig(kind=kind, use_gpu=False)).build(vectors, ids)
        np.testing.assert_array_equal(gpu.search(queries, 5)[1], cpu.search(queries, 5)[1])


def test_ef_search_per_call_trades_hnsw_effort_and_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    vectors = unit_vectors(300, seed=11)
    index = VectorIndex(DIM, IndexConfig(kind="hnsw", hnsw_m=8, hnsw_ef_search=64)).build(vectors, np.arange(300))
    used: list[int] = []
    graph_type = type(index._index)
    search = graph_type.search

    def spy(self, x, k, *args, params=None, **kwargs):  # noqa: ANN001, ANN202
        used.append(params.efSearch)
        return search(self, x, k, *args, params=params, **kwargs)

    monkeypatch.setattr(graph_type, "search", spy)
    assert index.search(vectors[:2], 5, ef_search=8)[1].shape == (2, 5)
    index.search(vectors[:2], 20, ef_search=8)  # never below k
    index.search(vectors[:2], 5)                 # the configured effort
    assert used == [8, 20, 64]
    with pytest.raises(VectorIndexError, match="ef_search"):
        index.search(vectors[:1], 5, ef_search=0)


@pytest.mark.parametrize(("storage", "faiss_type"), [("fp16", faiss.IndexHNSWSQ), ("sq8", faiss.IndexHNSWSQ),
                                                     ("float32", faiss.IndexHNSWFlat)])
def test_hnsw_storage_keeps_recall_and_survives_save_load(storage: str, faiss_type: type, tmp_path: Path) -> None:
    vectors, ids = unit_vectors(3000, seed=12), np.arange(3000, dtype=np.int64)
    queries = unit_vectors(50, seed=13)
    index = VectorIndex(DIM, IndexConfig(kind="hnsw", hnsw_storage=storage)).build(vectors, ids)
    assert isinstance(index._index, faiss_type)
    _, found = index.search(queries, k=10)
    exact_scores, exact = brute_force(vectors, ids, queries, 10)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact, strict=True)]) >= 0.9
    index.save(tmp_path / "idx")
    loaded = VectorIndex.load(tmp_path / "idx")
    assert isinstance(loaded._index, faiss_type) and loaded.config.hnsw_storage == storage
    np.testing.assert_array_equal(loaded.search(queries, 10)[1], found)


def test_unknown_hnsw_storage_is_refused() -> None:
    with pytest.raises(VectorIndexError, match=r"hnsw_storage='int4'.*fp16"):
        IndexConfig(hnsw_storage="int4")
