"""The app's ranker on protocol A: the product's ``Recommender``, queried through ``recommend()``.

Its store holds exactly what protocol A lets a model see: the leak-free catalog (movies with a
train interaction, genres and train tags as tags) and the train interactions. Its ranker is
fitted on that log (:meth:`Recommender.fit_ranker` holds out each user's last train items);
the number of cold slots is the one setting chosen here, on dev NDCG@10. The cold channel scans
every cold item (``cold_pool_max`` above the catalog size), so no item is kept or dropped by its
position in movies.csv, i.e. by its id.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

from benchmarks.movielens import ProtocolA, UserSplit
from benchmarks.recommender_eval import evaluate_a_lists

log = logging.getLogger("benchmarks.recommender")
COLD_SLOTS_GRID = (0, 2)  # none, and the app's default


def build_store(data: ProtocolA, encoder, store: Path, cold_slots: int):
    """A Recommender over the protocol's inputs (catalog items and train interactions only)."""
    from apps.recommender.catalog import Interaction
    from apps.recommender.config import RecommenderConfig
    from apps.recommender.ranking import RankingConfig
    from apps.recommender.recommender import Recommender

    ranking = replace(RankingConfig(), cold_slots=cold_slots, cold_pool_max=10 * data.n_items)
    config = RecommenderConfig(store_dir=store, mmr_lambda=1.0, snapshot_every=10**9, ranking=ranking)
    rec = Recommender.load(config, encoder=encoder)
    rec.upsert_items(data.catalog_items())
    rec.add_interactions([Interaction(user, movie, ts) for user, movie, ts in data.train_interactions()])
    return rec


def app_ranker(data: ProtocolA, encoder, workdir: Path, users: list[UserSplit] | None = None) -> dict:
    """``{"test", "dev", "chosen", "grid"}``: each cold-slot setting fitted and scored on dev, the best on test."""
    position = {movie: i for i, movie in enumerate(data.movie_ids)}
    tried, best = [], None
    for slots in COLD_SLOTS_GRID:
        rec = build_store(data, encoder, workdir / f"movielens-cold{slots}", slots)
        started = time.monotonic()
        ranker = rec.fit_ranker()
        fit_seconds = round(time.monotonic() - started, 1)

        def recommend(user: UserSplit, split: str, rec=rec) -> list[int]:
            history = [{"id": data.movie_ids[i], "ts": ts}
                       for i, ts in zip(user.train.tolist(), user.train_ts.tolist(), strict=True)]
            found = [position[item.id] for item in rec.recommend(history, k=10).items]
            if split == "test" and user.dev in found:  # the dev item is never ranked on test: one more, drop it
                found = [position[item.id] for item in rec.recommend(history, k=11).items]
            return [i for i in found if not (split == "test" and i == user.dev)][:10]

        started = time.monotonic()
        dev = evaluate_a_lists(data, "dev", recommend, users)
        entry = {"params": {"cold_slots": slots}, "dev": dev, "fit_seconds": fit_seconds,
                 "ms_per_request": round(1000 * (time.monotonic() - started) / dev["users"], 2),
                 "ranker": ranker.info.get("chosen", ranker.source), "weights": ranker.info.get("weights")}
        tried.append(entry)
        log.info("ranker cold_slots=%d: dev %s", slots, dev)
        if best is None or dev["ndcg10"] > best[0]["dev"]["ndcg10"]:
            if best is not None:
                best[1].close()
            best = (entry, rec, recommend)
        else:
            rec.close()
    entry, rec, recommend = best
    test = evaluate_a_lists(data, "test", recommend, users)
    info = {"index_kind": rec.health()["index_kind"], "encoder": getattr(encoder, "name", encoder.source)}
    rec.close()
    return {"test": test, "dev": entry["dev"], "chosen": entry["params"], "grid": tried, **info}
