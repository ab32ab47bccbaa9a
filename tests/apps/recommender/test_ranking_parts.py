import numpy as np

from apps.recommender.cold import ColdPool, ColdPoolCache
from apps.recommender.diversity import mmr
from apps.recommender.explain import matched_words
from apps.recommender.interactions import InteractionStats
from apps.recommender.item_index import ItemIndex
from apps.recommender.ranker import FEATURES, fit_ranker


def test_cooccurrence_is_item_cosine() -> None:
    # items 0 and 1 share 2 users; item 0 has 2 users, item 1 has 3: cos = 2 / sqrt(2 * 3)
    stats = InteractionStats.from_histories({"u": [0, 1], "v": [0, 1], "w": [1, 2]}, size=4)
    scores = stats.cooccurrence(np.array([0]), np.array([1.0]))
    assert np.isclose(scores[1], 2 / np.sqrt(6))
    assert scores[2] == 0 and scores[3] == 0
    assert np.isclose(stats.pairwise(np.array([0]), np.array([1]))[0, 0], 2 / np.sqrt(6))
    assert stats.top_popular(2).tolist() == [1, 0]


def test_mmr_skips_near_duplicates() -> None:
    vectors = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    scores = np.array([1.0, 0.99, 0.5])
    assert mmr(scores, vectors, 2, lam=1.0).tolist() == [0, 1]
    assert mmr(scores, vectors, 2, lam=0.5).tolist() == [0, 2]


def test_matched_words_ignore_stopwords_and_plurals() -> None:
    assert matched_words("a tent for camping trips", "Camping tent, great for a trip") == ["tent", "camping", "trips"]


def test_logistic_regression_learns_the_informative_feature() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, len(FEATURES))).astype(np.float32)
    y = (x[:, FEATURES.index("cooc_recent")] > 0.8).astype(float)
    ranker = fit_ranker(x, y)
    assert ranker.source == "learned"
    weights = dict(zip(FEATURES, ranker.weights, strict=True))
    assert weights["cooc_recent"] == max(weights.values())


def test_cooccurrence_pair_matches_two_single_passes() -> None:
    stats = InteractionStats.from_histories({"u": [0, 1, 3], "v": [0, 1], "w": [1, 2], "x": [2, 3]}, size=5)
    a, wa, b, wb = np.array([0, 2]), np.array([1.0, 0.5]), np.array([1, 3, 9]), np.array([0.3, 1.0, 1.0])
    pair = stats.cooccurrence_pair(a, wa, b, wb)
    assert np.allclose(pair[0], stats.cooccurrence(a, wa))
    assert np.allclose(pair[1], stats.cooccurrence(b, wb))


def test_cold_pool_finds_the_nearest_cold_items_and_follows_index_changes() -> None:
    index = ItemIndex(2, "test")
    vectors = np.array([[1, 0], [0.8, 0.6], [0.6, 0.8], [0, 1]], dtype=np.float32)
    index.build(np.arange(4), vectors, seq=1)
    stats = InteractionStats.from_histories({f"u{n}": [0] for n in range(6)}, size=4)  # item 0 is popular
    cache = ColdPoolCache(cold_below=5, limit=10)
    pool = cache.get(index, stats)
    assert pool.keys.tolist() == [1, 2, 3]
    assert sorted(pool.search(np.array([1.0, 0.0], np.float32), 2).tolist()) == [1, 2]
    assert cache.get(index, stats) is pool
    index.apply(2, np.array([7]), np.array([[1.0, 0.0]], np.float32))  # a new item is cold at once
    assert 7 in cache.get(index, stats).keys.tolist()
    assert ColdPool.build(index, stats, 5, limit=2).keys.tolist() == [3, 7]  # the newest when capped
    assert index.has_many(np.array([-1, 0, 7, 8, 100])).tolist() == [False, True, True, False, False]
