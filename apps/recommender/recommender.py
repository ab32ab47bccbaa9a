"""The recommender product code calls: a catalog, its vector index, interaction statistics and a ranker.

    rec = Recommender.load(config_from_env())
    rec.upsert_items([{"id": "sku-1", "title": "Trail running shoe", "category": "shoes"}])
    result = rec.recommend(user_history=["sku-7", "sku-9"], query="waterproof", k=10,
                           filters={"category": "shoes", "available": True})
    for item in result.items: print(item.id, item.score, item.explanation)

Writes go to the SQLite catalog first (the source of truth) and then to the in-memory index;
the index snapshot is rewritten every ``config.snapshot_every`` writes and on :meth:`close`,
and :meth:`load` replays any catalog change newer than the snapshot. Several processes may
share one store (service workers, the CLI): each request first compares the catalog's change
counter with the one this process has applied (one SQLite read) and catches up when another
process wrote (:meth:`sync`). A :meth:`rebuild`
(re-embedding every item) builds a fresh index beside the live one and swaps it in, so
requests meanwhile are served from the last complete index.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import threadpoolctl

from apps.recommender.catalog import Catalog, Interaction
from apps.recommender.cold import ColdPoolCache
from apps.recommender.config import RecommenderConfig
from apps.recommender.diversity import mmr
from apps.recommender.encoders import TextEncoder, load_encoder
from apps.recommender.explain import explain
from apps.recommender.filters import Filters, RequestError, parse_history
from apps.recommender.interactions import InteractionStats
from apps.recommender.item_index import IndexSnapshotError, ItemIndex
from apps.recommender.items import Item, item_text, parse_items, read_items
from apps.recommender.ranker import (
    COLD_WEIGHTS,
    LinearRanker,
    fit_cold_ranker,
    fit_ranker,
    training_examples,
)
from apps.recommender.ranking import ItemAges, Profile, candidates, features, user_signals

log = logging.getLogger(__name__)


class ItemNotFoundError(KeyError):
    """An item id the catalog does not hold (or holds as deleted)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "item not found"


@dataclass
class Recommendation:
    id: str
    score: float
    explanation: str
    title: str = ""
    history_item: str | None = None
    query_words: list[str] = field(default_factory=list)


@dataclass
class Recommendations:
    items: list[Recommendation]
    unknown_ids: list[str] = field(default_factory=list)
    note: str | None = None


@dataclass(frozen=True)
class WriteResult:
    seq: int
    ids: list[str]
    unknown_ids: list[str] = field(default_factory=list)


class Recommender:
    """Thread-safe: requests run concurrently; writes are serialised among themselves."""

    def __init__(self, config: RecommenderConfig, catalog: Catalog, encoder: TextEncoder, index: ItemIndex) -> None:
        self.config = config
        self.catalog = catalog
        self.encoder = encoder
        self._index = index
        self._write_lock = threading.RLock()
        self._items: dict[int, Item] = {}
        self._key_of: dict[str, int] = {}
        self._max_key = 0
        self._added_at: dict[int, float] = {}  # keys of the items that have an added_at
        self._ages: ItemAges | None = None     # made from _added_at when a request needs it
        self._stats = InteractionStats(0)
        self._ranker = LinearRanker.fixed()
        self._cold_ranker = LinearRanker.fixed(COLD_WEIGHTS)
        self._unsaved = 0
        self._synced_seq = 0         # every catalog change up to this one is applied here
        self._interactions_mark = 0  # the newest interaction row the statistics were made from
        self._cold_pools = ColdPoolCache(config.ranking.cold_below, config.ranking.cold_pool_max)

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def load(cls, config: RecommenderConfig | None = None, encoder: TextEncoder | None = None) -> Recommender:
        """Open the catalog under ``config.store_dir``, load or build its index, its stats and its ranker."""
        config = config if config is not None else RecommenderConfig()
        encoder = encoder if encoder is not None else load_encoder(config.embedder, config.device)
        if config.search_threads is not None:
            # One request multiplies a few hundred vectors: fanning that out over cores only adds thread
            # spin-waits (3x slower on a busy 2-core machine), and the service already runs requests in
            # parallel. Process-wide, like the libraries' own settings.
            faiss.omp_set_num_threads(config.search_threads)
            threadpoolctl.threadpool_limits(config.search_threads, user_api="blas")
        catalog = Catalog(config.catalog_path).open()
        try:
            index = ItemIndex.load(config.index_path, encoder.source, config.index)
        except IndexSnapshotError as error:
            log.info("building the index from the catalog: %s", error)
            index = ItemIndex(encoder.dim, encoder.source, config.index)
        rec = cls(config, catalog, encoder, index)
        for stored in catalog.live_items():
            rec._remember(stored.key, stored.item)
        replayed = rec._catch_up(index)
        rec._synced_seq = index.seq
        if replayed:
            rec.save()
        rec.refresh_stats()
        for attribute, path in (("_ranker", config.ranker_path), ("_cold_ranker", config.cold_ranker_path)):
            if path.is_file():
                try:
                    setattr(rec, attribute, LinearRanker.load(path))
                except (ValueError, KeyError) as error:
                    log.warning("ignoring the saved ranker %s: %s", path, error)
        log.info("recommender ready: %d items (%s index, seq %d), %d users in the log, %s ranker",
                 len(index), index.kind, index.seq, rec._stats.users, rec._ranker.source)
        return rec

    def _catch_up(self, index: ItemIndex) -> int:
        """Apply every catalog change newer than ``index.seq`` (re-embedding changed items); returns how many."""
        seq = self.catalog.seq()
        changes = self.catalog.changes_since(index.seq)
        if not changes and seq == index.seq:
            return 0
        live = [c for c in changes if not c.deleted]
        gone = [c.key for c in changes if c.deleted]
        vectors = self.encoder.encode([item_text(c.item) for c in live])
        index.apply(seq, np.array([c.key for c in live], np.int64), vectors, np.array(gone, np.int64))
        log.info("index caught up with the catalog: %d re-embedded, %d removed (seq %d)", len(live), len(gone), seq)
        return len(changes)

    def save(self) -> None:
        """Write the index snapshot now (atomic; a file lock keeps processes sharing the store from racing)."""
        import fcntl

        with self._write_lock:
            lock_path = Path(self.config.store_dir) / ".snapshot.lock"
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            with open(lock_path, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                self._index.save(self.config.index_path)
            self._unsaved = 0

    def in_sync(self) -> bool:
        """True when this process has applied every catalog change (no :meth:`sync` work is pending)."""
        return self.catalog.seq() == self._synced_seq

    def sync(self) -> bool:
        """Apply the catalog changes other processes made (items re-embedded, statistics re-read).

        One SQLite read when nothing changed; returns whether anything was applied.
        """
        if self.catalog.seq() == self._synced_seq:
            return False
        with self._write_lock:
            seq = self.catalog.seq()
            if seq == self._synced_seq:
                return False
            changes = self.catalog.changes_since(self._synced_seq)
            live = [c for c in changes if not c.deleted]
            gone = [c.key for c in changes if c.deleted]
            vectors = (self.encoder.encode([item_text(c.item) for c in live]) if live
                       else np.zeros((0, self.encoder.dim), np.float32))
            self._index.apply(seq, np.array([c.key for c in live], np.int64), vectors, np.array(gone, np.int64))
            for change in live:
                self._remember(change.key, change.item)
            for key in gone:
                self._forget(key)
            self._synced_seq = seq
            if self.catalog.interactions_mark() != self._interactions_mark:
                self.refresh_stats()
            log.info("synced with the store: %d item change(s) from other processes (seq %d)", len(changes), seq)
            return True

    def _own_write(self, seq: int) -> int:
        """The seq the index may claim after this process wrote ``seq`` (call under the write lock).

        When another process wrote in between, the index keeps claiming the last fully applied seq
        (so a snapshot never skips a change) and the next :meth:`sync` applies everything since.
        """
        if seq == self._synced_seq + 1:
            self._synced_seq = seq
        return self._synced_seq

    def close(self) -> None:
        if self._unsaved:
            self.save()
        self.catalog.close()

    def _remember(self, key: int, item: Item) -> None:
        self._items[key] = item
        self._key_of[item.id] = key
        self._max_key = max(self._max_key, key)
        if item.added_at is not None or key in self._added_at:
            self._set_added_at(key, item.added_at)

    def _forget(self, key: int) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self._key_of.pop(item.id, None)
        if key in self._added_at:
            self._set_added_at(key, None)

    def _set_added_at(self, key: int, added_at: float | None) -> None:
        if added_at is None:
            self._added_at.pop(key, None)
        else:
            self._added_at[key] = added_at
        self._ages = None

    def _item_ages(self) -> ItemAges:
        ages = self._ages
        if ages is None:
            ages = self._ages = ItemAges.build(dict(self._added_at))
        return ages

    def _written(self) -> None:
        self._unsaved += 1
        if self._unsaved >= self.config.snapshot_every:
            self.save()

    # ------------------------------------------------------------------ writes
    def upsert_items(self, rows: Iterable[Mapping[str, Any] | Item], source: str = "items") -> WriteResult:
        """Validate all rows, embed them, then write them in one transaction; nothing is written on a bad row."""
        items = parse_items(rows, source=source)
        if not items:
            return WriteResult(self.catalog.seq(), [])
        vectors = self.encoder.encode([item_text(item) for item in items])
        with self._write_lock:
            seq, keys = self.catalog.upsert(items)
            self._index.apply(self._own_write(seq), np.asarray(keys, np.int64), vectors)
            for key, item in zip(keys, items, strict=True):
                self._remember(key, item)
            self._written()
        return WriteResult(seq, [item.id for item in items])

    def load_file(self, path: str | Path) -> WriteResult:
        """Bulk upsert from a CSV or JSONL file (all rows validated first)."""
        return self.upsert_items(read_items(path), source=str(path))

    def delete_items(self, ids: Iterable[str]) -> WriteResult:
        """Delete ``ids``; ids not in the catalog are reported in ``unknown_ids``, not an error."""
        ids = [str(i) for i in ids]
        with self._write_lock:
            seq, keys, unknown = self.catalog.delete(ids)
            self._index.apply(self._own_write(seq), np.zeros(0, np.int64), np.zeros((0, self.encoder.dim), np.float32),
                              np.asarray(keys, np.int64))
            for key in keys:
                self._forget(key)
            self._written()
        return WriteResult(seq, [i for i in dict.fromkeys(ids) if i not in unknown], unknown)

    def add_interactions(self, interactions: Iterable[Interaction | Mapping[str, Any]]) -> int:
        rows = [i if isinstance(i, Interaction) else Interaction(str(i["user_id"]), str(i["item_id"]),
                                                                 _float_or_none(i.get("ts")),
                                                                 float(i.get("weight") or 1.0))
                for i in interactions]
        with self._write_lock:
            seq, count = self.catalog.add_interactions(rows)
            self._own_write(seq)
            self.refresh_stats()
        return count

    def rebuild(self) -> None:
        """Re-embed every item into a new index, then swap it in; requests meanwhile use the current one."""
        with self._write_lock:
            seq, live = self.catalog.seq(), self.catalog.live_items()
        fresh = ItemIndex(self.encoder.dim, self.encoder.source, self.config.index)
        vectors = self.encoder.encode([item_text(s.item) for s in live])
        fresh.build(np.array([s.key for s in live], np.int64), vectors, seq)
        with self._write_lock:
            self._catch_up(fresh)  # writes that landed while the new index was built
            self._index = fresh
            self.save()

    # ------------------------------------------------------------------ interaction statistics and ranker
    def histories(self) -> dict[str, list[int]]:
        """Per user, the live item keys of the interaction log, oldest first."""
        by_user: dict[str, list[tuple[float, int, int]]] = defaultdict(list)
        for n, it in enumerate(self.catalog.interactions()):
            key = self._key_of.get(it.item_id)
            if key is not None:
                by_user[it.user_id].append((it.ts if it.ts is not None else float("-inf"), n, key))
        return {user: [key for _, _, key in sorted(rows)] for user, rows in by_user.items()}

    def refresh_stats(self) -> None:
        mark = self.catalog.interactions_mark()  # read first: rows added meanwhile trigger another refresh
        self._stats = InteractionStats.from_histories(self.histories(), self._max_key + 1)
        self._interactions_mark = mark

    def fit_ranker(self, targets_per_user: int = 3, max_users: int | None = 5000) -> LinearRanker:
        """Learn the ranker (and the cold-slot ranker) from the interaction log and save them.

        See :mod:`apps.recommender.ranker`; returns the main ranker.
        """
        x, y, groups, cold = training_examples(self.histories(), self._index, self._max_key + 1,
                                               self.config.ranking, targets_per_user=targets_per_user,
                                               max_users=max_users, ages=self._item_ages())
        ranker = fit_ranker(x, y, groups)
        cold_ranker = fit_cold_ranker(x, y, groups, cold) if len(y) else LinearRanker.fixed(COLD_WEIGHTS)
        self._ranker, self._cold_ranker = ranker, cold_ranker
        if ranker.source == "learned":
            ranker.save(self.config.ranker_path)
        if cold_ranker.source == "learned":
            cold_ranker.save(self.config.cold_ranker_path)
        return ranker

    # ------------------------------------------------------------------ reads
    def item(self, item_id: str) -> Item:
        key = self._key_of.get(str(item_id))
        if key is None:
            raise ItemNotFoundError(f"item {item_id!r} is not in the catalog")
        return self._items[key]

    def health(self) -> dict:
        self.sync()
        index = self._index
        return {"items": len(self._items), "indexed": len(index), "index_kind": index.kind, "seq": index.seq,
                "catalog_seq": self.catalog.seq(), "encoder": self.encoder.source, "ranker": self._ranker.source,
                "users_in_log": self._stats.users}

    def _check_k(self, k: Any) -> int:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.config.max_k:
            raise RequestError(f"k={k!r} is out of range; expected an integer from 1 to {self.config.max_k}")
        return k

    def recommend(self, user_history: Iterable[Any] | None = None, query: str | None = None, k: int = 10,
                  filters: Filters | Mapping[str, Any] | None = None) -> Recommendations:
        """Top-``k`` items for a history (ids, oldest first, or ``{"id", "ts", "weight"}``) and/or a query."""
        k = self._check_k(k)
        if self.config.search_threads is not None:  # an OpenMP setting holds per calling thread: set it on each
            faiss.omp_set_num_threads(self.config.search_threads)
        self.sync()
        filters = Filters.parse(filters)
        if query is not None and not isinstance(query, str):
            raise RequestError(f"query is {query!r}; expected text or null")
        query = query.strip() if query and query.strip() else None
        entries = parse_history(user_history)
        known = [(self._key_of[e.id], e.weight) for e in entries if e.id in self._key_of]
        unknown = list(dict.fromkeys(e.id for e in entries if e.id not in self._key_of))
        index = self._index
        known = [(key, w) for key, w in known if index.has(key)]
        keys = np.array([key for key, _ in known], np.int64)
        weights = np.array([w for _, w in known], np.float32)
        seen = set(keys.tolist()) if filters.exclude_seen else set()
        if not len(keys) and query is None:
            note = "no usable history and no query: showing popular items"
            if unknown:
                note = f"none of the history ids are in the catalog ({len(unknown)} unknown) and no query: " \
                       "showing popular items"
            return Recommendations(self._popular(k, filters, seen), unknown, note)
        query_vector = self.encoder.encode([query])[0] if query else None
        profile = Profile(keys, weights, query_vector, seen)
        return Recommendations(self._rank(profile, query, k, filters, index), unknown)

    def similar(self, item_id: str, k: int = 10, filters: Filters | Mapping[str, Any] | None = None
                ) -> Recommendations:
        """Items most like ``item_id`` (itself excluded); ItemNotFoundError for an unknown id."""
        k = self._check_k(k)
        self.sync()
        self.item(item_id)
        filters = replace(Filters.parse(filters), exclude_seen=True)
        result = self.recommend([item_id], None, k, filters)
        for item in result.items:  # the "history" is the item being looked at
            item.explanation = item.explanation.replace(" from your history", "")
        return result

    def _popular(self, k: int, filters: Filters, seen: set[int]) -> list[Recommendation]:
        stats = self._stats
        order = stats.top_popular(len(self._items)) if not stats.empty else np.zeros(0, np.int64)
        # then the items nobody has chosen yet: the newest by added_at first, then the last inserted
        rest = sorted(set(self._items) - set(order.tolist()),
                      key=lambda key: (self._added_at.get(key, float("-inf")), key), reverse=True)
        picked = []
        for key in [*order.tolist(), *rest]:
            item = self._items.get(key)
            if item is None or key in seen or not filters.allows(item):
                continue
            count = float(stats.popularity(np.array([key]))[0])
            reason = f"Popular: {int(count)} user(s) chose it" if count else "New in the catalog"
            picked.append(Recommendation(item.id, round(float(np.log1p(count)), 6), reason, item.title))
            if len(picked) == k:
                break
        return picked

    def _rank(self, profile: Profile, query: str | None, k: int, filters: Filters,
              index: ItemIndex) -> list[Recommendation]:
        cfg = self.config.ranking
        stats = self._stats
        signals = user_signals(profile, index, stats, cfg)
        cold_pool = self._cold_pools.get(index, stats) if cfg.cold_slots and not stats.empty else None
        pool = candidates(profile, signals, index, stats, cfg, cold_pool)
        items = self._items
        if filters.restrictive:
            pool = np.array([key for key in pool.tolist() if key in items and filters.allows(items[key])],
                            dtype=np.int64)
        # (an item deleted while this request runs is dropped when the results are explained)
        if filters.restrictive and len(pool) < k * self.config.mmr_pool:
            extra = [key for key, item in list(self._items.items())[:cfg.filtered_scan_limit]
                     if key not in profile.seen and filters.allows(item) and index.has(key)]
            pool = np.union1d(pool, np.asarray(extra, np.int64))
        if not len(pool):
            return []
        x, vectors = features(pool, profile, signals, index, stats, cfg, self._item_ages())
        scores = main_scores = self._ranker.score(x)
        slots = min(cfg.cold_slots, k // 3) if not stats.empty else 0
        best = np.argsort(-scores, kind="stable")[: k * self.config.mmr_pool]
        picks = best[mmr(scores[best], vectors[best], k - slots, self.config.mmr_lambda)]
        cold_picks = np.zeros(0, np.int64)
        if slots:
            # new and niche items rarely win on popularity or co-occurrence; a few slots are theirs
            cold = (stats.popularity(pool) < cfg.cold_below) & ~np.isin(np.arange(len(pool)), picks)
            cold_scores = np.where(cold, self._cold_ranker.score(x), -np.inf)
            cold_picks = np.argsort(-cold_scores, kind="stable")[:slots]
            cold_picks = cold_picks[np.isfinite(cold_scores[cold_picks])]
            scores = scores.copy()
            scores[cold_picks] = cold_scores[cold_picks]
            if len(cold_picks) < slots:  # not enough cold candidates: fill from the main order
                taken = np.zeros(len(pool), dtype=bool)
                taken[picks] = taken[cold_picks] = True
                order = np.argsort(-main_scores, kind="stable")
                picks = np.concatenate([picks, order[~taken[order]][: slots - len(cold_picks)]]).astype(np.int64)
        picks = np.concatenate([picks, cold_picks]).astype(np.int64)
        return self._explain(pool[picks], scores[picks], vectors[picks], x[picks], profile, signals, query,
                             set(range(len(picks) - len(cold_picks), len(picks))))

    def _explain(self, keys, scores, vectors, x, profile, signals, query, cold_rows=()) -> list[Recommendation]:
        recent = signals.recent
        text_sims = vectors @ signals.recent_vectors.T if len(recent) else np.zeros((len(keys), 0))
        co_sims = self._stats.pairwise(keys, recent) if len(recent) else np.zeros((len(keys), 0))
        out = []
        for row, key in enumerate(keys.tolist()):
            item = self._items.get(key)
            if item is None:  # deleted a moment ago
                continue
            history_id = history_title = None
            history_similarity, co_consumed = 0.0, False
            if len(recent):
                combined = text_sims[row] + co_sims[row]
                best = int(np.argmax(combined))
                source = self._items.get(int(recent[best]))
                if source is not None:
                    history_id, history_title = source.id, source.title
                history_similarity = float(text_sims[row, best])
                co_consumed = bool(co_sims[row, best] > max(0.05, text_sims[row, best] / 4))
            reason = explain(history_id=history_id, history_title=history_title,
                             history_similarity=history_similarity, co_consumed=co_consumed, query=query,
                             query_similarity=float(x[row, 3]), item_text=item_text(item))
            text = f"New or niche pick: {reason.text[0].lower()}{reason.text[1:]}" if row in cold_rows else reason.text
            out.append(Recommendation(item.id, round(float(scores[row]), 6), text, item.title,
                                      reason.history_item, reason.query_words))
        return out


def _float_or_none(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return float(value)
