"""Metrics of the MovieLens protocols and the dev-then-test loop every tuned method goes through.

A method of protocol A is a *scorer*: ``score(user) -> (n_items,)`` scores over the leak-free
catalog, higher first. :func:`evaluate_a` removes the user's excluded items (train history, and
the dev item when scoring test), ranks the rest and checks the target; a target outside the
catalog is a miss. Protocol B ranks only the split's new items and has several targets per user.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from benchmarks.movielens import ProtocolA, UserSplit

log = logging.getLogger("benchmarks.recommender")
Scorer = Callable[[UserSplit], np.ndarray]


def hit_and_ndcg(top: Sequence[int], target: int) -> tuple[float, float]:
    """HR@10 and NDCG@10 of one ranked list with one relevant item (1.0 and 1.0 when it is first)."""
    top = list(top)[:10]
    if target < 0 or target not in top:
        return 0.0, 0.0
    return 1.0, float(1.0 / np.log2(top.index(target) + 2))


def recall_and_ndcg(top: Sequence[str], targets: Iterable[str]) -> tuple[float, float]:
    """Recall@10 = hits / min(10, targets) and NDCG@10 with binary gains; both 1.0 for a perfect list."""
    targets = set(targets)
    gains = [1.0 if item in targets else 0.0 for item in list(top)[:10]]
    dcg = sum(g / np.log2(i + 2) for i, g in enumerate(gains))
    ideal = sum(1.0 / np.log2(i + 2) for i in range(min(10, len(targets))))
    return sum(gains) / min(10, len(targets)), dcg / ideal


def top10(scores: np.ndarray, excluded: np.ndarray) -> list[int]:
    """The 10 best catalog indices, ``excluded`` never; ties go to the lower index."""
    scores = np.asarray(scores, np.float64).copy()
    scores[excluded] = -np.inf
    return np.argsort(-scores, kind="stable")[:10].tolist()  # stable: a tie at the cut goes to the lower index


def evaluate_a(data: ProtocolA, split: str, score: Scorer, users: list[UserSplit] | None = None) -> dict:
    """HR@10 and NDCG@10 over all users and over the cold ones (target with < 5 train interactions)."""
    users = users if users is not None else data.users
    rows = []
    for user in users:
        target = user.target(split)
        ranked = top10(score(user), user.excluded(split)) if target >= 0 else []
        rows.append((*hit_and_ndcg(ranked, target), data.cold(target)))
    return summarise(rows)


def evaluate_a_lists(data: ProtocolA, split: str, recommend: Callable[[UserSplit, str], list[int]],
                     users: list[UserSplit] | None = None) -> dict:
    """The same metrics for a method that returns its own top-10 (catalog indices, excluded items never)."""
    users = users if users is not None else data.users
    rows = [(*hit_and_ndcg(recommend(u, split), u.target(split)), data.cold(u.target(split))) for u in users]
    return summarise(rows)


def summarise(rows: list[tuple[float, float, bool]]) -> dict:
    hits, gains, cold = (np.array(column) for column in zip(*rows, strict=True))
    cold = cold.astype(bool)
    return {"hr10": round(float(hits.mean()), 4), "ndcg10": round(float(gains.mean()), 4),
            "cold_hr10": round(float(hits[cold].mean()), 4) if cold.any() else None,
            "cold_ndcg10": round(float(gains[cold].mean()), 4) if cold.any() else None,
            "users": int(len(hits)), "cold_users": int(cold.sum()), "cold_hits": int(hits[cold].sum())}


def tune_on_dev(name: str, grid: list[dict], fit: Callable[[dict], Scorer], data: ProtocolA,
                users: list[UserSplit] | None = None) -> tuple[dict, dict]:
    """Fit every setting of ``grid``, keep the best by dev NDCG@10, report it on test.

    Returns ``(test metrics, details)``; details hold every setting's dev figures and the choice.
    Test is computed once, for the chosen setting only.
    """
    tried, best, best_scorer = [], None, None
    for params in grid:
        scorer = fit(params)
        dev = evaluate_a(data, "dev", scorer, users)
        tried.append({"params": params, "dev": dev})
        log.info("%s %s: dev %s", name, params, dev)
        if best is None or dev["ndcg10"] > best["dev"]["ndcg10"]:
            best, best_scorer = tried[-1], scorer
    test = evaluate_a(data, "test", best_scorer, users)
    return test, {"chosen": best["params"], "dev": best["dev"], "grid": tried}
