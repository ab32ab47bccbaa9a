import numpy as np

from apps.recommender.cold import ColdPool, ColdPoolCache
from apps.recommender.diversity import mmr
from apps.recommender.explain import matched_words
from apps.recommender.interactions import InteractionStats
from apps.recommender.item_index import ItemIndex
from apps.recommender.ranker import FEATURES, fit_ranker
from apps.recommender.ranking import ItemAges, Profile, RankingConfig, features, user_signals


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


def test_an_ignored_feature_gets_no_weight_even_when_it_is_informative() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, len(FEATURES))).astype(np.float32)
    y = (x[:, FEATURES.index("popularity")] + 0.5 * x[:, FEATURES.index("text_recent")] > 0.8).astype(float)
    weights = dict(zip(FEATURES, fit_ranker(x, y, ignore=("popularity",)).weights, strict=True))
    assert weights["popularity"] == 0.0
    assert weights["text_recent"] == max(weights.values())


def test_no_feature_reads_interaction_absence_or_key_order() -> None:
    # "nobody has tried it" and "close in id order" marked exactly the items held-out ratings put in MovieLens
    assert "unseen" not in FEATURES and "catalog_near" not in FEATURES
    index = ItemIndex(2, "test").build(np.arange(11, dtype=np.int64),
                                       np.tile(np.array([[1.0, 0.0]], np.float32), (11, 1)), seq=1)
    stats = InteractionStats.from_histories({"u": [2, 8]}, size=11)
    profile = Profile(np.array([2, 8], np.int64), np.ones(2, np.float32), seen={2, 8})
    signals = user_signals(profile, index, stats, RankingConfig())
    keys = np.array([0, 5, 9], np.int64)
    x, _ = features(keys, profile, signals, index, stats, RankingConfig())
    assert np.allclose(x, x[0])  # the same vector and no interactions: keys alone change nothing
    assert not x[:, FEATURES.index("freshness")].any()  # no added_at: no age


def test_freshness_comes_from_added_at_only() -> None:
    ages = ItemAges.build({0: 1000.0, 5: 3000.0, 9: 2000.0})
    assert np.allclose(ages.freshness(np.array([0, 5, 9, 7])), [0.0, 1.0, 0.5, 0.0])  # 7 has none: oldest
    assert not ItemAges.build({}).freshness(np.array([1, 2])).any()
    assert not ItemAges.build({3: 5.0}).freshness(np.array([3])).any()  # one date: no range


def test_cooccurrence_pair_scores_both_histories_and_ignores_keys_outside_the_log() -> None:
    stats = InteractionStats.from_histories({"u": [0, 1, 3], "v": [0, 1], "w": [1, 2], "x": [2, 3]}, size=5)
    a, wa, b, wb = np.array([0, 2]), np.array([1.0, 0.5]), np.array([1, 3, 9]), np.array([0.3, 1.0, 1.0])
    pair = stats.cooccurrence_pair(a, wa, b, wb)
    everything = np.arange(stats.size)
    cos = stats.pairwise(everything, everything)
    assert np.allclose(pair[0].at(everything), cos[:, a] @ wa)
    assert np.allclose(pair[1].at(everything), cos[:, b[:2]] @ wb[:2])  # key 9 is not in the log
    assert set(pair[0].top(2).tolist()) == set(np.argsort(-(cos[:, a] @ wa))[:2].tolist())
    assert np.allclose(stats.cooccurrence(a, wa), pair[0].at(everything))


def test_fast_cooccurrence_and_pairwise_match_the_dense_formula() -> None:
    rng = np.random.default_rng(3)
    size = 40
    histories = {f"u{u}": rng.choice(size - 5, size=rng.integers(1, 12), replace=False).tolist() for u in range(60)}
    stats = InteractionStats.from_histories(histories, size=size)
    x = np.zeros((len(histories), size))
    for row, keys in enumerate(histories.values()):
        x[row, keys] = 1
    counts = x.sum(axis=0)
    inv = np.where(counts > 0, 1 / np.sqrt(np.maximum(counts, 1)), 0)
    cosine = (x.T @ x) * inv[:, None] * inv[None, :]  # (size, size) item-kNN cosines
    a, wa = np.array([0, 3, 7, 38]), np.array([1.0, 0.8, 0.64, 2.0])  # 38: nobody touched it
    b, wb = np.array([5, 3, 11, 60]), np.array([0.5, 1.0, 1.0, 1.0])  # 60: outside the log
    first, second = stats.cooccurrence_pair(a, wa, b, wb)
    everything = np.arange(size)
    assert np.allclose(first.at(everything), cosine[:, a] @ wa, atol=1e-5)
    assert np.allclose(second.at(everything), cosine[:, b[:3]] @ wb[:3], atol=1e-5)
    # a log so dense that the scores are summed over the whole catalog rather than sorted
    dense = InteractionStats.from_histories({f"u{u}": list(range(size)) for u in range(3)}, size=size)
    assert np.allclose(dense.cooccurrence_pair(a, wa, b, wb)[0].at(everything), dense.cooccurrence(a, wa), atol=1e-5)
    # ... and one so sparse that the few touched items are sorted instead
    sparse_log = InteractionStats.from_histories({"u": [0, 3, 900], "v": [3, 7], "w": [7, 950]}, size=1000)
    sparse_pair = sparse_log.cooccurrence_pair(a, wa, b, wb)
    assert len(sparse_pair[0].keys) == 5
    assert np.allclose(sparse_pair[0].at(np.arange(1000)), sparse_log.cooccurrence(a, wa), atol=1e-5)
    assert np.allclose(sparse_pair[1].at(np.arange(1000)), sparse_log.cooccurrence(b, wb), atol=1e-5)
    pairs = stats.pairwise(a, b)
    assert np.allclose(pairs[:, :3], cosine[np.ix_(a, b[:3])], atol=1e-5)
    assert not pairs[:, 3].any()


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
    assert ColdPool.build(index, stats, 5, limit=2).keys.tolist() == [3, 7]  # the last inserted when capped
    assert index.has_many(np.array([-1, 0, 7, 8, 100])).tolist() == [False, True, True, False, False]
