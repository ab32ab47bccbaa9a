"""Nothing of the held-out MovieLens interactions reaches what the recommender benchmark's methods see.

The benchmark's inputs are built the way ``make bench-recommender`` builds them (benchmarks.movielens,
the peers' train matrix, SASRec's training windows, the app's store) from the shared ratings, and
checked against the held-out interactions read here independently of that code.
"""

from __future__ import annotations

import csv
from collections import defaultdict

import numpy as np
import pytest

from benchmarks.movielens import h, load_protocol_a, load_protocol_b
from benchmarks.recommender_eval import hit_and_ndcg, recall_and_ndcg, top10


@pytest.fixture(scope="module")
def ratings() -> dict[str, list[tuple[float, int]]]:
    from benchmarks.movielens import default_folder

    by_user: dict[str, list[tuple[float, int]]] = defaultdict(list)
    with open(default_folder() / "ratings.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            by_user[row["userId"]].append((float(row["timestamp"]), int(row["movieId"])))
    return {user: sorted(rows) for user, rows in by_user.items()}


@pytest.fixture(scope="module")
def held_out(ratings) -> tuple[set[tuple[str, str]], set[tuple[str, str]], set[str]]:
    """(train pairs, held-out (user, movie) pairs, movies that only held-out pairs mention)."""
    train = {(user, str(movie)) for user, rows in ratings.items() for _, movie in rows[:-2]}
    held = {(user, str(movie)) for user, rows in ratings.items() for _, movie in rows[-2:]}
    only_held = {movie for _, movie in held} - {movie for _, movie in train}
    return train, held, only_held


@pytest.fixture(scope="module")
def data():
    return load_protocol_a()


def test_protocol_a_catalog_holds_only_movies_with_a_train_interaction(data, held_out) -> None:
    train, _, only_held = held_out
    catalog = set(data.movie_ids)
    assert catalog == {movie for _, movie in train}
    assert only_held and not catalog & only_held
    assert {item["id"] for item in data.catalog_items()} == catalog
    # the protocol's count of test targets outside the catalog (a miss for every method)
    assert data.outside_catalog["test"] == 24
    assert sum(user.test < 0 for user in data.users) == 24


@pytest.mark.slow
def test_protocol_a_interactions_matrix_and_sequences_are_train_only(data, held_out) -> None:
    from benchmarks.recommender_sasrec import train_windows

    train, held, _ = held_out
    seen = {(user, movie) for user, movie, _ in data.train_interactions()}
    assert seen == train and not seen & (held - train)
    matrix = data.train_matrix().tocoo()
    from_matrix = {(data.users[r].user, data.movie_ids[c]) for r, c in zip(matrix.row, matrix.col, strict=True)}
    assert from_matrix == train and matrix.nnz == len(train)
    x, y = train_windows(data)  # SASRec's inputs and targets, RecBole ids = catalog index + 1
    assert int((y > 0).sum()) == sum(len(u.train) - 1 for u in data.users)
    assert x.max() <= data.n_items and y.max() <= data.n_items
    for user in data.users:  # the dev and test items are never in a train history
        assert user.dev not in user.train.tolist() or user.dev < 0
        assert user.test not in user.train.tolist() or user.test < 0


def test_protocol_a_tags_come_from_train_interactions_only(data, held_out) -> None:
    from benchmarks.movielens import default_folder

    train, _, _ = held_out
    allowed: dict[str, set[str]] = defaultdict(set)
    with open(default_folder() / "tags.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if (row["userId"], row["movieId"]) in train:
                allowed[row["movieId"]].add(row["tag"].strip().lower())
    for movie, tags in zip(data.movies, data.tags, strict=True):
        assert set(tags) <= allowed[movie.id], movie.id
    assert any(data.tags)


def test_candidates_exclude_the_history_and_on_test_the_dev_item(data) -> None:
    user = next(u for u in data.users if u.dev >= 0)
    everything = np.ones(data.n_items)
    assert not set(top10(everything, user.excluded("dev"))) & set(user.train.tolist())
    scores = np.zeros(data.n_items)
    scores[user.dev] = 1.0
    assert user.dev in top10(scores, user.excluded("dev"))
    assert user.dev not in top10(scores, user.excluded("test"))


@pytest.mark.slow
def test_the_app_store_of_the_benchmark_holds_only_the_protocol_inputs(data, held_out, tmp_path) -> None:
    from apps.recommender.encoders import HashingEncoder
    from benchmarks.recommender_ranker import build_store

    train, _, only_held = held_out
    rec = build_store(data, HashingEncoder(64), tmp_path / "store", cold_slots=2)
    try:
        ids = {stored.item.id for stored in rec.catalog.live_items()}
        assert ids == set(data.movie_ids) and not ids & only_held
        assert {(i.user_id, i.item_id) for i in rec.catalog.interactions()} == train
        assert rec.config.ranking.cold_pool_max >= data.n_items  # no cold item dropped by its id order
    finally:
        rec.close()


def test_protocol_b_new_items_never_reach_training_or_histories(ratings) -> None:
    rated = {str(movie) for rows in ratings.values() for _, movie in rows}
    new = {movie for movie in rated if h(movie) in (0, 1)}
    for split, bucket in (("test", 0), ("dev", 1)):
        data = load_protocol_b(split)
        assert {m.id for m in data.new_items} == {movie for movie in rated if h(movie) == bucket}
        assert not set(data.history_movies) & new
        for user in data.users:
            assert not set(user.history) & new and len(user.history) >= 5
            assert user.targets and all(h(movie) == bucket for movie in user.targets)
    test = load_protocol_b("test")
    assert (len(test.users), len(test.new_items)) == (590, 950)


def test_metrics_known_answers() -> None:
    assert hit_and_ndcg([7, 1, 2], 7) == (1.0, 1.0)
    assert hit_and_ndcg([1, 7], 7) == (1.0, pytest.approx(1 / np.log2(3)))
    assert hit_and_ndcg([1, 2], 7) == (0.0, 0.0) and hit_and_ndcg([1, 2], -1) == (0.0, 0.0)
    assert recall_and_ndcg(["a", "b"], ["a", "b"]) == (1.0, pytest.approx(1.0))
    assert recall_and_ndcg(["x", "a"], ["a"]) == (1.0, pytest.approx(1 / np.log2(3)))
    recall, _ = recall_and_ndcg([str(i) for i in range(10)], [str(i) for i in range(5, 25)])
    assert recall == 0.5  # hits / min(10, targets)
