"""The ranker: a linear combination of the ranking features, fixed or learned by logistic regression.

Learning (:func:`fit_ranker`) replays the interaction log the way the service is used: for
every user, the last item is the target and the rest is the history. The co-occurrence
statistics used for those features are computed with every user's last item held out, so
the target's own interaction never leaks into its features (an item seen once would
otherwise look like a perfect co-occurrence match). The logistic regression separates each
target from sampled candidates of the same user; its coefficients are the weights. A catalog
without an interaction log uses :data:`FIXED_WEIGHTS`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from apps.recommender.cold import ColdPool
from apps.recommender.interactions import InteractionStats
from apps.recommender.item_index import ItemIndex
from apps.recommender.ranking import FEATURES, ItemAges, Profile, RankingConfig, candidates, features, user_signals
from core.atomic import atomic_write_text

log = logging.getLogger(__name__)

# The cold slots' ranker when too few cold targets exist to learn one: text similarity to the recent history
# (or the query). The co-occurrence and popularity terms of cold items are counts of 1-4 and only add noise.
# (An earlier version also had a lead for never-interacted items and closeness in catalog order; both only
# pointed at items that held-out interactions had put in the benchmark's catalog, and are gone.)
COLD_WEIGHTS = {"text_recent": 1.0, "text_max": 0.0, "text_mean": 0.0, "query": 1.5, "cooc_recent": 0.0,
                "cooc_all": 0.0, "popularity": 0.0, "freshness": 0.0, "cold_text": 0.0}
FIXED_WEIGHTS = {"text_recent": 1.0, "text_max": 0.5, "text_mean": 0.3, "query": 1.5, "cooc_recent": 1.0,
                 "cooc_all": 0.5, "popularity": 0.15, "freshness": 0.02, "cold_text": 0.0}


@dataclass
class LinearRanker:
    """``score = ((x - mean) / scale) @ weights`` over :data:`FEATURES`; higher ranks first."""

    weights: np.ndarray
    mean: np.ndarray = field(default_factory=lambda: np.zeros(len(FEATURES), np.float32))
    scale: np.ndarray = field(default_factory=lambda: np.ones(len(FEATURES), np.float32))
    source: str = "fixed"
    info: dict = field(default_factory=dict)

    @classmethod
    def fixed(cls, weights: dict[str, float] = FIXED_WEIGHTS) -> LinearRanker:
        return cls(np.array([weights[name] for name in FEATURES], dtype=np.float32))

    def score(self, x: np.ndarray) -> np.ndarray:
        """(m,) scores of the (m, len(FEATURES)) feature rows."""
        return ((x - self.mean) / self.scale) @ self.weights

    def to_dict(self) -> dict:
        return {"features": list(FEATURES), "weights": self.weights.tolist(), "mean": self.mean.tolist(),
                "scale": self.scale.tolist(), "source": self.source, "info": self.info}

    def save(self, path: Path) -> None:
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> LinearRanker:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("features") != list(FEATURES):
            raise ValueError(f"{path} was trained on features {data.get('features')}, not {list(FEATURES)}; "
                             "re-train the ranker (python -m apps.recommender fit-ranker)")
        return cls(np.asarray(data["weights"], np.float32), np.asarray(data["mean"], np.float32),
                   np.asarray(data["scale"], np.float32), data.get("source", "learned"), data.get("info", {}))


def training_examples(histories: Mapping[str, Sequence[int]], index: ItemIndex, size: int,
                      config: RankingConfig, targets_per_user: int = 2, negatives: int | None = None, seed: int = 13,
                      max_users: int | None = None, ages: ItemAges | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Features (n, F), labels (n,), group ids (n,) and cold flags (n,): one group per (user, held-out target).

    The last ``targets_per_user`` items of each history are targets, each ranked against the
    candidates of the history before it (all of them, or ``negatives`` sampled); a target the
    candidate stage does not retrieve gives no group. The interaction statistics leave every
    target out.
    """
    rng = np.random.default_rng(seed)
    usable = {u: [k for k in keys if index.has(k)] for u, keys in histories.items()}
    usable = {u: keys for u, keys in usable.items() if len(keys) >= targets_per_user + 2}
    held_out = InteractionStats.from_histories({u: keys[:-targets_per_user] for u, keys in usable.items()}, size)
    cold_pool = ColdPool.build(index, held_out, config.cold_below, config.cold_pool_max)
    users = sorted(usable)
    if max_users is not None and len(users) > max_users:
        users = sorted(rng.choice(users, size=max_users, replace=False).tolist())
    xs, ys, groups, cold = [], [], [], []
    for user in users:
        for back in range(1, targets_per_user + 1):
            keys = usable[user][: len(usable[user]) - back + 1]
            target, history = keys[-1], np.asarray(keys[:-1], dtype=np.int64)
            profile = Profile(history, np.ones(len(history), np.float32), seen=set(history.tolist()))
            signals = user_signals(profile, index, held_out, config)
            pool = candidates(profile, signals, index, held_out, config, cold_pool)
            if target not in pool:
                # Only targets the candidate stage finds: a target added by hand would be the one candidate
                # that was not retrieved, and the ranker would learn "unlike the history" as its signature.
                continue
            pool = pool[pool != target]
            if negatives is not None and len(pool) > negatives:
                pool = rng.choice(pool, size=negatives, replace=False)
            keys_x = np.concatenate([[target], pool]).astype(np.int64)
            x, _ = features(keys_x, profile, signals, index, held_out, config, ages)
            xs.append(x)
            ys.append(np.r_[1.0, np.zeros(len(pool))])
            groups.append(np.full(len(keys_x), len(groups)))
            cold.append(held_out.popularity(keys_x) < config.cold_below)
    if not xs:
        return np.zeros((0, len(FEATURES)), np.float32), np.zeros(0), np.zeros(0, np.int64), np.zeros(0, bool)
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(groups), np.concatenate(cold)


def group_ndcg(scores: np.ndarray, targets: np.ndarray, groups: np.ndarray, cutoff: int = 10) -> float:
    """Mean NDCG@cutoff over groups with one relevant row each (``targets[g]`` = its row); 1.0 when all first."""
    better = np.bincount(groups, weights=scores > scores[targets][groups], minlength=len(targets))
    rank = better + 1
    return float(np.where(rank <= cutoff, 1.0 / np.log2(rank + 1), 0.0).mean())


def coordinate_ascent(z: np.ndarray, y: np.ndarray, groups: np.ndarray, weights: np.ndarray, rounds: int = 4
                      ) -> tuple[np.ndarray, float, float]:
    """Refine ``weights`` one coordinate at a time to maximise training NDCG@10 (Metzler and Croft, 2007).

    A logistic loss weighs every (target, candidate) pair alike, and most pairs are easy; the
    top ten is decided by a few hard ones. Coordinate ascent optimises the ranking metric itself:
    for each feature in turn it tries a grid of steps and keeps the best, for a few rounds.
    """
    targets = np.flatnonzero(y == 1)
    groups = np.searchsorted(np.unique(groups), groups)
    if len(targets) != groups.max() + 1:
        raise ValueError("coordinate ascent needs exactly one target row per group")
    targets = targets[np.argsort(groups[targets])]
    w = weights / (np.abs(weights).sum() or 1.0)
    best = initial = group_ndcg(z @ w, targets, groups)
    steps = np.array([-1.0, -0.5, -0.25, -0.1, -0.05, 0.05, 0.1, 0.25, 0.5, 1.0])
    for _ in range(rounds):
        improved = False
        for j in range(len(w)):
            for step in steps:
                trial = w.copy()
                trial[j] += step
                score = group_ndcg(z @ trial, targets, groups)
                if score > best + 1e-6:
                    best, w, improved = score, trial, True
        if not improved:
            break
    return w.astype(np.float32), round(initial, 4), round(best, 4)


def fit_cold_ranker(x: np.ndarray, y: np.ndarray, groups: np.ndarray, cold: np.ndarray,
                    min_groups: int = 200) -> LinearRanker:
    """The ranker of the cold slots: trained on the groups whose target is cold, among cold candidates only.

    Below ``min_groups`` cold targets the learned weights are noise (on MovieLens, 73 groups gave a
    worse dev cold hit rate than plain text similarity), so the fixed :data:`COLD_WEIGHTS` are used.
    (Holding out 10 items per user gave 255 cold groups there, and the learned weights still lost to the
    fixed ones on the dev item: 9 against 14 cold hits of 76.)
    """
    cold_groups = np.unique(groups[(y == 1) & cold])
    rows = np.isin(groups, cold_groups) & cold
    if len(cold_groups) < min_groups:
        log.info("only %d cold targets: the cold slots use fixed text weights", len(cold_groups))
        return LinearRanker.fixed(COLD_WEIGHTS)
    return fit_ranker(x[rows], y[rows], groups[rows], fixed=COLD_WEIGHTS)


def _logistic(z: np.ndarray, y: np.ndarray, groups: np.ndarray | None, c: float, pair_negatives: int) -> np.ndarray:
    """Logistic-regression weights over standardised features ``z``: pairwise within groups when given."""
    from sklearn.linear_model import LogisticRegression

    if groups is None:
        model = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
        model.fit(z, y)
        return model.coef_[0].astype(np.float32)
    diffs, rng = [], np.random.default_rng(0)
    order = np.argsort(groups, kind="stable")
    for rows in np.split(order, np.flatnonzero(np.diff(groups[order])) + 1):
        pos, neg = z[rows[y[rows] == 1]], z[rows[y[rows] == 0]]
        if len(neg) > pair_negatives:  # the logistic fit is a starting point: a sample of pairs will do
            neg = neg[rng.choice(len(neg), size=pair_negatives, replace=False)]
        if len(pos) and len(neg):
            diffs.append((pos[:, None, :] - neg[None, :, :]).reshape(-1, z.shape[1]))
    d = np.concatenate(diffs)
    model = LogisticRegression(C=c, fit_intercept=False, max_iter=2000)
    model.fit(np.concatenate([d, -d]), np.r_[np.ones(len(d)), np.zeros(len(d))])
    return model.coef_[0].astype(np.float32)


def _ndcg(ranker: LinearRanker, x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    dense = np.searchsorted(np.unique(groups), groups)
    targets = np.flatnonzero(y == 1)
    return round(group_ndcg(ranker.score(x), targets[np.argsort(dense[targets])], dense), 4)


def fit_ranker(x: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None, c: float = 1.0,
               refine: bool = True, pair_negatives: int = 100, fixed: dict[str, float] = FIXED_WEIGHTS,
               ignore: Sequence[str] = ()) -> LinearRanker:
    """The ranker for rows ``x`` (n, F) labelled ``y``; the fixed weights with too few examples.

    With ``groups`` (one id per row: the (user, target) the row was ranked for; one target per
    group) the regression is pairwise: it learns ``w`` such that ``w . (x_target - x_other) > 0``
    within a group, which is what ranking needs (pooled pointwise regression learns what separates
    targets from candidates across users, where per-user effects swamp the ranking signal). It is
    then refined by coordinate ascent on NDCG@10, and the fixed, the logistic and the refined
    weights are compared on every fifth group, held out from both fits; the best is returned.
    """
    positives = int(y.sum())
    if positives < 10 or positives == len(y):
        log.info("only %d positive example(s) of %d: keeping the fixed ranker weights", positives, len(y))
        return LinearRanker.fixed(fixed)
    unused = [FEATURES.index(name) for name in ignore]
    if unused:  # a constant column gets no weight from either fit, and its weight is zeroed below
        x = x.copy()
        x[:, unused] = 0.0
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 1e-6, scale, 1.0).astype(np.float32)
    mean = mean.astype(np.float32)
    z = (x - mean) / scale
    info: dict = {"examples": int(len(y)), "positives": positives, "pairwise": groups is not None}
    if groups is None or not refine:
        chosen = LinearRanker(_logistic(z, y, groups, c, pair_negatives), mean, scale, "learned", info)
    else:
        held = groups % 5 == 0
        fit = ~held
        logistic = _logistic(z[fit], y[fit], groups[fit], c, pair_negatives)
        refined, _, info["train_ndcg10"] = coordinate_ascent(z[fit], y[fit], groups[fit], logistic)
        options = {"fixed": LinearRanker.fixed(fixed), "logistic": LinearRanker(logistic, mean, scale, "learned"),
                   "refined": LinearRanker(refined, mean, scale, "learned")}
        info["validation_ndcg10"] = {name: _ndcg(r, x[held], y[held], groups[held]) for name, r in options.items()}
        name = max(options, key=lambda n: (info["validation_ndcg10"][n], n != "fixed"))
        info["chosen"] = name
        chosen = options[name]
        chosen.info = info
    if chosen.source == "learned":
        weights = chosen.weights
        weights[unused] = 0.0
        query = FEATURES.index("query")
        if x[:, query].std() <= 1e-6:
            # The log has no queries, so the data cannot say what a query is worth: give a query as much
            # pull per unit of cosine as the history's text features have together.
            text = [FEATURES.index(name) for name in ("text_recent", "text_max", "text_mean")]
            weights[query] = float(sum(max(weights[i], 0.0) / scale[i] for i in text)) or 1.0
        info["weights"] = {name: round(float(w), 4) for name, w in zip(FEATURES, weights, strict=True)}
    chosen.info = info
    log.info("ranker: %s", info)
    return chosen
