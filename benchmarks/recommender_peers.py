"""The peers of protocol A, each fitted on train interactions only and tuned on dev.

- most-popular, item-kNN and recency item-kNN as BENCHMARKS.md defines them (no parameters);
- ``implicit`` ALS and BPR, a small grid of factors x regularization chosen on dev NDCG@10;
- LensKit's EASE (Steck 2019), a method none of the others is: a closed-form item-item
  regression, the usual strongest non-neural baseline on MovieLens; its L2 weight chosen on dev;
- the text of the items alone (user = mean of the history's vectors).

The peer libraries are benchmark-only dependencies (``benchmarks/requirements-recommender.txt``,
installed by ``make bench-recommender-env``); without them their rows say so and the rest runs.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from benchmarks.movielens import ProtocolA, UserSplit
from benchmarks.recommender_eval import Scorer, evaluate_a, tune_on_dev

log = logging.getLogger("benchmarks.recommender")

# Grids kept small for 2 shared cores; the reference run picked ALS (64, 0.01) and BPR (128, 0.01) from such grids.
ALS_GRID = [{"factors": f, "regularization": r} for f in (32, 64, 128) for r in (0.01, 0.1)]
BPR_GRID = [{"factors": f, "regularization": r} for f in (64, 128) for r in (0.001, 0.01)]
# EASE's L2 weight: the published MovieLens settings lie between a few hundred and a few thousand; each fit
# inverts a 9,681-square matrix (30-60 s on one core). With (250, 1000) dev chose 250, the edge: so 75 as well.
EASE_GRID = [{"regularization": r} for r in (75.0, 250.0, 1000.0)]


def cooccurrence(data: ProtocolA):
    """Train co-occurrence cosine of the app (apps.recommender.interactions), over catalog indices."""
    from apps.recommender.interactions import InteractionStats

    return InteractionStats.from_histories({s.user: s.train.tolist() for s in data.users}, data.n_items)


def classic(data: ProtocolA, users: list[UserSplit] | None = None) -> dict[str, dict]:
    """popular, itemknn and itemknn_recent: ``{name: {"dev": ..., "test": ...}}``."""
    stats = cooccurrence(data)
    popular = data.train_counts.astype(np.float64)

    def itemknn(user: UserSplit) -> np.ndarray:
        return stats.cooccurrence(user.train, np.ones(len(user.train)))

    def recent(user: UserSplit) -> np.ndarray:
        keys = user.train[-10:]
        return stats.cooccurrence(keys, 0.8 ** np.arange(len(keys))[::-1])

    scorers: dict[str, Scorer] = {"popular": lambda u: popular, "itemknn": itemknn, "itemknn_recent": recent}
    return {name: {split: evaluate_a(data, split, scorer, users) for split in ("dev", "test")}
            for name, scorer in scorers.items()}


def text_mean(data: ProtocolA, vectors: np.ndarray, users: list[UserSplit] | None = None) -> dict:
    """User = the normalised mean of the history's (n_items, dim) unit vectors; cosine to every item."""
    def score(user: UserSplit) -> np.ndarray:
        profile = vectors[user.train].mean(axis=0)
        return vectors @ (profile / np.linalg.norm(profile))

    return {split: evaluate_a(data, split, score, users) for split in ("dev", "test")}


def _factor_scorer(data: ProtocolA, user_factors: np.ndarray, item_factors: np.ndarray) -> Scorer:
    row = {s.user: n for n, s in enumerate(data.users)}
    return lambda user: item_factors @ user_factors[row[user.user]]


def implicit_peers(data: ProtocolA, seed: int, users: list[UserSplit] | None = None) -> dict[str, dict]:
    """``implicit`` ALS and BPR on the train matrix, each tuned on dev."""
    try:
        from implicit.als import AlternatingLeastSquares
        from implicit.bpr import BayesianPersonalizedRanking
    except ImportError as error:
        reason = f"implicit is not installed ({error}); run make bench-recommender-env"
        return {"implicit_als": {"error": reason}, "implicit_bpr": {"error": reason}}
    from threadpoolctl import threadpool_limits

    matrix = data.train_matrix()
    threads = int(os.environ.get("TEXTML_NUM_THREADS", "1"))

    def als(params: dict) -> Scorer:
        model = AlternatingLeastSquares(**params, iterations=15, random_state=seed, use_gpu=False,
                                        num_threads=threads)
        with threadpool_limits(threads):
            model.fit(matrix, show_progress=False)
        return _factor_scorer(data, np.asarray(model.user_factors), np.asarray(model.item_factors))

    def bpr(params: dict) -> Scorer:
        model = BayesianPersonalizedRanking(**params, learning_rate=0.01, iterations=100, random_state=seed,
                                            use_gpu=False, num_threads=threads)
        model.fit(matrix, show_progress=False)
        return _factor_scorer(data, np.asarray(model.user_factors), np.asarray(model.item_factors))

    out = {}
    for name, grid, fit in (("implicit_als", ALS_GRID, als), ("implicit_bpr", BPR_GRID, bpr)):
        test, details = tune_on_dev(name, grid, fit, data, users)
        out[name] = {"test": test, **details}
    return out


def lenskit_ease(data: ProtocolA, users: list[UserSplit] | None = None) -> dict:
    """LensKit's EASEScorer on the train interactions, scored through the component's own call."""
    try:
        import pandas as pd
        from lenskit.data import ItemList, RecQuery, from_interactions_df
        from lenskit.knn.ease import EASEConfig, EASEScorer
    except ImportError as error:
        return {"error": f"lenskit is not installed ({error}); run make bench-recommender-env"}
    pairs = [(n, int(i)) for n, s in enumerate(data.users) for i in s.train]
    frame = pd.DataFrame(pairs, columns=["user_id", "item_id"])
    dataset = from_interactions_df(frame, user_col="user_id", item_col="item_id")
    catalog = ItemList(item_ids=np.arange(data.n_items))
    row = {s.user: n for n, s in enumerate(data.users)}

    def fit(params: dict) -> Scorer:
        os.environ.setdefault("LK_EASE_SOLVER", "scipy")  # in place: one n_items^2 matrix less in memory
        scorer = EASEScorer(EASEConfig(**params))
        scorer.train(dataset)

        def score(user: UserSplit) -> np.ndarray:
            query = RecQuery(user_id=row[user.user], user_items=ItemList(item_ids=user.train))
            scored = scorer(query, catalog)
            out = np.full(data.n_items, -np.inf)
            out[scored.ids()] = np.nan_to_num(scored.scores(), nan=-np.inf)
            return out

        return score

    test, details = tune_on_dev("lenskit_ease", EASE_GRID, fit, data, users)
    return {"test": test, **details}
