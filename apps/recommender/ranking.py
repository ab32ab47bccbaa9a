"""Candidates and ranking features for one user: pure functions over the index and the interaction stats.

A user is a :class:`Profile`: history keys oldest to newest (with weights) and/or a query
vector. Candidates are the union of FAISS neighbours of the user's recency-weighted profile
vector, of the query and of the last few history items, plus item-kNN neighbours and popular
items when an interaction log exists. Each candidate gets the :data:`FEATURES` that
:class:`~apps.recommender.ranker.LinearRanker` combines.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from apps.recommender.cold import ColdPool
from apps.recommender.interactions import InteractionStats, SparseScores
from apps.recommender.item_index import ItemIndex

FEATURES = (
    "text_recent",   # recency-weighted mean cosine to the last history items
    "text_max",      # best cosine to any recent history item
    "text_mean",     # cosine to the mean of the whole history
    "query",         # cosine to the query (0 without one)
    "cooc_recent",   # recency-weighted item-kNN (co-occurrence cosine) score
    "cooc_all",      # item-kNN score over the whole history, per history item
    "popularity",    # log(1 + interactions) / log(1 + max interactions)
    "freshness",     # the item's added_at within the catalog's range: 0 oldest .. 1 newest (0 without added_at)
    "cold_text",     # text_recent for items with few interactions (text is all a cold item has)
)
# Not features, by design: "nobody has interacted with it yet" and closeness in id or key order. On a catalog
# built from an interaction log (MovieLens lists only movies someone rated) both mark exactly the items that
# held-out interactions brought in, so on a benchmark they measure the split, not the user. Item age comes only
# from an explicit Item.added_at.


@dataclass(frozen=True)
class RankingConfig:
    """How candidates are gathered and scored. Defaults follow the benchmark protocol's recency item-kNN."""

    recent_items: int = 10          # history items that count as "recent"
    recency_decay: float = 0.8      # weight of a history item = decay ** age (age 0 = newest)
    per_source: int = 100           # candidates from each FAISS query and each item-kNN list
    popular: int = 50               # popular candidates (when an interaction log exists)
    seed_items: int = 3             # the newest history items each get their own FAISS query ...
    seed_per_source: int = 30       # ... for this many neighbours (an HNSW query costs ~ max(k, efSearch))
    seed_ef_search: int = 32        # HNSW effort of those queries (candidates only: the ranker re-scores them)
    cold_below: float = 5.0         # items with fewer interactions count as cold (new or niche)
    cold_slots: int = 2             # of every k results, up to this many (at most k // 3) go to cold items
    cold_search: int = 100          # with cold slots: the cold items nearest the profile (see apps.recommender.cold)
    cold_pool_max: int = 5_000      # the cold channel scans at most this many cold items exactly (the newest first)
    filtered_scan_limit: int = 20_000  # filters that leave too few candidates: scan up to this many items


@dataclass(frozen=True)
class ItemAges:
    """When items entered the catalog (``Item.added_at``, Unix seconds), for the ``freshness`` feature."""

    added_at: dict[int, float] = field(default_factory=dict)  # key -> added_at, only items that have one
    first: float = 0.0
    last: float = 0.0

    @classmethod
    def build(cls, added_at: dict[int, float]) -> ItemAges:
        values = added_at.values()
        return cls(dict(added_at), min(values), max(values)) if added_at else cls()

    def freshness(self, keys: np.ndarray) -> np.ndarray:
        """(m,) in 0..1: 1 for the newest dated item, 0 for the oldest and for items without ``added_at``."""
        if not self.added_at or self.last <= self.first:
            return np.zeros(len(keys), np.float32)
        when = np.array([self.added_at.get(int(key), self.first) for key in keys], np.float64)
        return ((when - self.first) / (self.last - self.first)).astype(np.float32)


@dataclass
class Profile:
    """The user as the ranker sees them. ``keys``/``weights`` oldest first; ``seen`` never recommended."""

    keys: np.ndarray                          # (h,) int64 known history keys
    weights: np.ndarray                       # (h,) float32 user-given weights
    query_vector: np.ndarray | None = None    # (dim,) float32
    seen: set[int] = field(default_factory=set)

    @property
    def empty(self) -> bool:
        return len(self.keys) == 0 and self.query_vector is None


def recency_weights(profile: Profile, config: RankingConfig) -> tuple[np.ndarray, np.ndarray]:
    """The recent history keys and their weights ``decay ** age * weight`` (age 0 = newest)."""
    recent = profile.keys[-config.recent_items:]
    ages = np.arange(len(recent))[::-1]
    weights = config.recency_decay ** ages * profile.weights[-config.recent_items:]
    return recent, weights.astype(np.float32)


def _normalise(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


@dataclass
class UserSignals:
    """Per-request intermediate results shared by candidates, features and explanations."""

    recent: np.ndarray            # (r,) recent history keys
    recent_weights: np.ndarray    # (r,)
    recent_vectors: np.ndarray    # (r, dim)
    mean_vector: np.ndarray | None
    profile_vector: np.ndarray | None
    cooc_recent: SparseScores     # recency-weighted item-kNN score of every item
    cooc_all: SparseScores        # item-kNN score over the whole history, per history item


def user_signals(profile: Profile, index: ItemIndex, stats: InteractionStats, config: RankingConfig) -> UserSignals:
    recent, weights = recency_weights(profile, config)
    recent_vectors = index.vectors(recent) if len(recent) else np.zeros((0, index.dim), np.float32)
    mean_vector = profile_vector = None
    if len(profile.keys):
        all_vectors = index.vectors(profile.keys)
        mean_vector = _normalise((all_vectors * profile.weights[:, None]).sum(axis=0))
        profile_vector = _normalise((recent_vectors * weights[:, None]).sum(axis=0))
    cooc_recent, cooc_all = stats.cooccurrence_pair(recent, weights, profile.keys, profile.weights)
    if len(profile.keys):
        cooc_all = cooc_all.scaled(1.0 / float(profile.weights.sum()))
    return UserSignals(recent, weights, recent_vectors, mean_vector, profile_vector, cooc_recent, cooc_all)


def candidates(profile: Profile, signals: UserSignals, index: ItemIndex, stats: InteractionStats,
               config: RankingConfig, cold_pool: ColdPool | None = None) -> np.ndarray:
    """Unique candidate keys (live in the index, not seen), ascending.

    All ANN queries go to FAISS as one batch. ``cold_pool`` (with an interaction log and cold
    slots) adds the cold items nearest the profile, which the other lists rarely reach.
    """
    queries = [v for v in (signals.profile_vector, profile.query_vector) if v is not None]
    seeds = signals.recent_vectors[-config.seed_items:] if config.seed_items else signals.recent_vectors[:0]
    found = []
    if len(index):
        for batch, n, ef in ((queries, config.per_source, None),
                             (seeds, config.seed_per_source, config.seed_ef_search)):
            if len(batch) and n > 0:
                _, keys = index.search(np.stack(list(batch)), n, ef)
                found.append(keys.ravel())
    if not stats.empty:
        found += [signals.cooc_recent.top(config.per_source), signals.cooc_all.top(config.per_source),
                  stats.top_popular(config.popular)]
        seed = signals.profile_vector if signals.profile_vector is not None else profile.query_vector
        if config.cold_slots and cold_pool is not None and seed is not None:
            found.append(cold_pool.search(seed, config.cold_search))
    if not found:
        return np.zeros(0, dtype=np.int64)
    keys = np.unique(np.concatenate(found))
    keys = keys[index.has_many(keys)]
    if profile.seen:
        keys = keys[~np.isin(keys, np.fromiter(profile.seen, np.int64, len(profile.seen)))]
    return keys


def features(keys: np.ndarray, profile: Profile, signals: UserSignals, index: ItemIndex,
             stats: InteractionStats, config: RankingConfig, ages: ItemAges | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """(m, len(FEATURES)) features of candidate ``keys``, and their (m, dim) vectors."""
    m = len(keys)
    vectors = index.vectors(keys) if m else np.zeros((0, index.dim), np.float32)
    out = np.zeros((m, len(FEATURES)), dtype=np.float32)
    if m == 0:
        return out, vectors
    if len(signals.recent):
        sims = vectors @ signals.recent_vectors.T  # (m, r)
        out[:, 0] = sims @ signals.recent_weights / float(signals.recent_weights.sum())
        out[:, 1] = sims.max(axis=1)
        out[:, 2] = vectors @ signals.mean_vector
    if profile.query_vector is not None:
        out[:, 3] = vectors @ profile.query_vector
    if not stats.empty:
        out[:, 4] = signals.cooc_recent.at(keys) / float(signals.recent_weights.sum() or 1.0)
        out[:, 5] = signals.cooc_all.at(keys)
    counts = stats.popularity(keys)
    top = float(stats.counts.max()) if not stats.empty else 0.0
    out[:, 6] = np.log1p(counts) / np.log1p(top) if top > 0 else 0.0
    if ages is not None:
        out[:, 7] = ages.freshness(keys)
    out[:, 8] = np.where(counts < config.cold_below, out[:, 0], 0.0)
    return out, vectors
