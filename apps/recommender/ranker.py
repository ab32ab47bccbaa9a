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

from apps.recommender.interactions import InteractionStats
from apps.recommender.item_index import ItemIndex
from apps.recommender.ranking import FEATURES, Profile, RankingConfig, candidates, features, user_signals
from core.atomic import atomic_write_text

log = logging.getLogger(__name__)

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
    def fixed(cls) -> LinearRanker:
        return cls(np.array([FIXED_WEIGHTS[name] for name in FEATURES], dtype=np.float32))

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


def training_examples(histories: Mapping[str, Sequence[int]], index: ItemIndex, size: int, max_key: int,
                      config: RankingConfig, negatives: int = 50, seed: int = 13,
                      max_users: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels: per user, the last item (label 1) against ``negatives`` of its candidates (0)."""
    rng = np.random.default_rng(seed)
    usable = {u: [k for k in keys if index.has(k)] for u, keys in histories.items()}
    usable = {u: keys for u, keys in usable.items() if len(keys) >= 3}
    held_out = InteractionStats.from_histories({u: keys[:-1] for u, keys in usable.items()}, size)
    users = sorted(usable)
    if max_users is not None and len(users) > max_users:
        users = sorted(rng.choice(users, size=max_users, replace=False).tolist())
    xs, ys = [], []
    for user in users:
        keys = usable[user]
        target, history = keys[-1], np.asarray(keys[:-1], dtype=np.int64)
        profile = Profile(history, np.ones(len(history), np.float32), seen=set(history.tolist()))
        signals = user_signals(profile, index, held_out, config)
        pool = candidates(profile, signals, index, held_out, config)
        pool = pool[pool != target]
        if len(pool) > negatives:
            pool = rng.choice(pool, size=negatives, replace=False)
        keys_x = np.concatenate([[target], pool]).astype(np.int64)
        x, _ = features(keys_x, profile, signals, index, held_out, max_key, config)
        xs.append(x)
        ys.append(np.r_[1.0, np.zeros(len(pool))])
    if not xs:
        return np.zeros((0, len(FEATURES)), np.float32), np.zeros(0)
    return np.concatenate(xs), np.concatenate(ys)


def fit_ranker(x: np.ndarray, y: np.ndarray, c: float = 1.0) -> LinearRanker:
    """Logistic regression on standardised features; falls back to the fixed weights with too few examples."""
    from sklearn.linear_model import LogisticRegression

    positives = int(y.sum())
    if positives < 10 or positives == len(y):
        log.info("only %d positive example(s) of %d: keeping the fixed ranker weights", positives, len(y))
        return LinearRanker.fixed()
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 1e-6, scale, 1.0)
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
    model.fit((x - mean) / scale, y)
    weights = model.coef_[0].astype(np.float32)
    query = FEATURES.index("query")
    if x[:, query].std() <= 1e-6:
        # The log has no queries, so the data cannot say what a query is worth: give a query as much pull
        # per unit of cosine as the history's text features have together.
        text = [FEATURES.index(name) for name in ("text_recent", "text_max", "text_mean")]
        weights[query] = float(sum(max(weights[i], 0.0) / scale[i] for i in text)) or 1.0
    info = {"examples": int(len(y)), "positives": positives,
            "weights": {name: round(float(w), 4) for name, w in zip(FEATURES, weights, strict=True)}}
    log.info("learned ranker weights: %s", info["weights"])
    return LinearRanker(weights, mean.astype(np.float32), scale.astype(np.float32), "learned", info)
