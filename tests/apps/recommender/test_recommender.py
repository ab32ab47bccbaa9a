import threading
from pathlib import Path

import numpy as np
import pytest

from apps.recommender.catalog import Interaction
from apps.recommender.encoders import HashingEncoder
from apps.recommender.filters import RequestError
from apps.recommender.items import ItemValidationError
from apps.recommender.recommender import ItemNotFoundError, Recommender

from .conftest import ITEMS, make_config


def ids(result) -> list[str]:
    return [item.id for item in result.items]


def test_history_ranks_the_related_items_first(rec: Recommender) -> None:
    result = rec.recommend(["tent"], k=2)
    assert set(ids(result)) == {"bag", "stove"}
    assert result.unknown_ids == [] and result.note is None
    assert "Backpacking tent" in result.items[0].explanation and result.items[0].history_item == "tent"


def test_query_words_are_explained(rec: Recommender) -> None:
    result = rec.recommend(query="cast iron skillet", k=1)
    assert ids(result) == ["pan"]
    assert result.items[0].query_words == ["cast", "iron", "skillet"]
    assert "Matches your search" in result.items[0].explanation


def test_unknown_history_ids_are_reported_not_fatal(rec: Recommender) -> None:
    result = rec.recommend(["nope", "knife", "nope", "gone?"], k=3)
    assert result.unknown_ids == ["nope", "gone?"]
    assert "pan" in ids(result)


def test_no_history_and_no_query_gives_popular_items_with_a_note(rec: Recommender) -> None:
    result = rec.recommend([], k=3)
    assert len(result.items) == 3 and "popular" in result.note
    rec.add_interactions([Interaction("u1", "novel"), Interaction("u2", "novel"), Interaction("u2", "pan")])
    result = rec.recommend(["unknown"], None, k=2)
    assert ids(result) == ["novel", "pan"]
    assert result.unknown_ids == ["unknown"] and "none of the history ids" in result.note
    assert result.items[0].explanation == "Popular: 2 user(s) chose it"


@pytest.mark.parametrize("k", [0, -1, 101, 2.5, "10", True])
def test_k_out_of_range(rec: Recommender, k) -> None:
    with pytest.raises(RequestError, match=r"k=.* is out of range; expected an integer from 1 to 100"):
        rec.recommend(["tent"], k=k)


def test_bad_filters_and_history_are_named(rec: Recommender) -> None:
    with pytest.raises(RequestError, match=r"unknown filter\(s\) \['colour'\]"):
        rec.recommend(["tent"], filters={"colour": "red"})
    with pytest.raises(RequestError, match="history is the string"):
        rec.recommend("tent")
    with pytest.raises(RequestError, match="weights must be > 0"):
        rec.recommend([{"id": "tent", "weight": 0}])


def test_filters(rec: Recommender) -> None:
    assert "stove" not in ids(rec.recommend(["tent"], k=5, filters={"available": True}))
    kitchen = rec.recommend(["tent"], k=5, filters={"category": "Kitchen"})
    assert set(ids(kitchen)) == {"knife", "pan"}
    assert "tent" in ids(rec.recommend(["tent"], k=6, filters={"exclude_seen": False}))
    assert "tent" not in ids(rec.recommend(["tent"], k=6))


def test_timestamps_order_the_history(rec: Recommender) -> None:
    # the newer history item weighs more in the recency-weighted profile, whatever the list order
    def pan_score(knife_ts: int) -> float:
        result = rec.recommend([{"id": "knife", "ts": knife_ts}, {"id": "tent", "ts": 5}], k=4)
        return next(item.score for item in result.items if item.id == "pan")

    assert pan_score(knife_ts=9) > pan_score(knife_ts=1)


def test_upserted_item_is_recommendable_at_once_and_deleted_item_gone(rec: Recommender) -> None:
    rec.upsert_items([{"id": "kayak", "title": "Sea kayak", "text": "touring kayak with paddle"}])
    assert ids(rec.recommend(query="kayak paddle", k=1)) == ["kayak"]
    result = rec.delete_items(["kayak", "never-there"])
    assert result.ids == ["kayak"] and result.unknown_ids == ["never-there"]
    assert "kayak" not in ids(rec.recommend(query="kayak paddle", k=6))
    assert rec.recommend(["kayak"], k=1).unknown_ids == ["kayak"]


def test_malformed_upsert_writes_nothing(rec: Recommender) -> None:
    before = rec.catalog.seq()
    with pytest.raises(ItemValidationError, match=r"row 2 field 'price'"):
        rec.upsert_items([{"id": "ok", "title": "fine"}, {"id": "bad", "title": "x", "price": "cheap"}])
    assert rec.catalog.seq() == before
    with pytest.raises(ItemNotFoundError):
        rec.item("ok")


def test_similar(rec: Recommender) -> None:
    assert ids(rec.similar("knife", k=1)) == ["pan"]
    with pytest.raises(ItemNotFoundError, match="'zzz' is not in the catalog"):
        rec.similar("zzz")


def test_restart_keeps_catalog_and_index(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    first = Recommender.load(config)
    first.upsert_items(ITEMS)
    first.delete_items(["novel"])
    first.close()
    again = Recommender.load(config)
    assert again.health()["items"] == len(ITEMS) - 1 and again.health()["indexed"] == len(ITEMS) - 1
    assert ids(again.recommend(query="cast iron skillet", k=1)) == ["pan"]


def test_crash_before_snapshot_is_replayed_from_the_catalog(tmp_path: Path) -> None:
    config = make_config(tmp_path, snapshot_every=1000)
    first = Recommender.load(config)
    first.upsert_items(ITEMS[:3])
    first.save()
    first.upsert_items(ITEMS[3:])          # committed to the catalog, not in the snapshot
    first.delete_items(["tent"])
    first.catalog.close()                  # "crash": no close(), no snapshot
    again = Recommender.load(config)
    assert again.health()["indexed"] == len(ITEMS) - 1
    assert again.health()["seq"] == again.health()["catalog_seq"]
    assert ids(again.recommend(query="cast iron skillet", k=1)) == ["pan"]
    assert "tent" not in ids(again.recommend(query="camping tent", k=6))


def test_a_snapshot_of_another_encoder_is_rebuilt(tmp_path: Path) -> None:
    first = Recommender.load(make_config(tmp_path))
    first.upsert_items(ITEMS)
    first.close()
    again = Recommender.load(make_config(tmp_path), encoder=HashingEncoder(64))
    assert again.health()["indexed"] == len(ITEMS) and again._index.dim == 64


class GatedEncoder(HashingEncoder):
    """Blocks big encode calls (a rebuild) until released, so a request can arrive mid-rebuild."""

    def __init__(self) -> None:
        super().__init__(256)
        self.started, self.release = threading.Event(), threading.Event()

    def encode(self, texts):
        if len(texts) > 3:
            self.started.set()
            self.release.wait(10)
        return super().encode(texts)


def test_requests_during_a_rebuild_use_the_last_complete_index(tmp_path: Path) -> None:
    encoder = GatedEncoder()
    rec = Recommender.load(make_config(tmp_path), encoder=encoder)
    encoder.release.set()
    rec.upsert_items(ITEMS)
    encoder.release.clear()
    worker = threading.Thread(target=rec.rebuild)
    worker.start()
    assert encoder.started.wait(10)
    assert ids(rec.recommend(["knife"], k=1)) == ["pan"]  # served while the rebuild is blocked
    rec.upsert_items([{"id": "wok", "title": "Carbon steel wok", "category": "kitchen"}])
    encoder.release.set()
    worker.join(10)
    assert rec.health()["indexed"] == len(ITEMS) + 1  # the write made during the rebuild is kept
    assert np.isfinite(rec.recommend(["knife"], k=2).items[0].score)


def test_a_new_item_gets_the_cold_slot_with_a_reason(rec: Recommender) -> None:
    # a log in which the outdoor items are consumed together; then a brand-new outdoor item arrives
    rec.add_interactions([Interaction(f"u{u}", item, float(t)) for u in range(6)
                          for t, item in enumerate(["tent", "bag", "stove", "novel"])])
    rec.upsert_items([{"id": "lantern", "title": "Camping lantern", "category": "outdoor",
                       "tags": ["camping", "light"], "text": "camping lantern for the tent"}])
    result = rec.recommend(["tent", "bag"], k=3)
    assert ids(result)[-1] == "lantern"
    assert result.items[-1].explanation.startswith("New or niche pick: ")
    assert len(set(ids(result))) == 3


def test_fit_ranker_learns_and_persists(tmp_path: Path, encoder: HashingEncoder) -> None:
    config = make_config(tmp_path)
    rec = Recommender.load(config, encoder=encoder)
    rec.upsert_items(ITEMS)
    sessions = [["tent", "bag", "stove"], ["knife", "pan"], ["tent", "stove", "bag"], ["pan", "knife"]]
    rec.add_interactions([Interaction(f"u{u}", item, float(t)) for u in range(40)
                          for t, item in enumerate(sessions[u % 4] + sessions[(u + 1) % 4])])
    ranker = rec.fit_ranker()
    scores = ranker.info["validation_ndcg10"]
    assert set(scores) == {"fixed", "logistic", "refined"} and scores[ranker.info["chosen"]] == max(scores.values())
    rec.close()
    assert Recommender.load(config, encoder=encoder).health()["ranker"] == ranker.source


def test_a_never_tried_item_gets_no_lead_over_its_niche_twin(rec: Recommender) -> None:
    # two items with the same text: one tried once (niche), one nobody has tried yet. On a catalog built from an
    # interaction log, "nobody has tried it" marks the items that held-out interactions brought in: no lead for it.
    twin = {"title": "Camping lantern", "category": "outdoor", "tags": ["camping"], "text": "lantern for the tent"}
    rec.upsert_items([{"id": "lantern-old", **twin}, {"id": "lantern-new", **twin}])
    rec.add_interactions([Interaction(f"u{u}", item, float(t)) for u in range(6)
                          for t, item in enumerate(["tent", "bag", "stove", "novel"])]
                         + [Interaction("u9", "lantern-old", 1.0), Interaction("u9", "knife", 2.0)])
    scores = {item.id: item.score for item in rec.recommend(["tent", "bag"], k=9).items}
    assert scores["lantern-old"] >= scores["lantern-new"]


def test_two_processes_sharing_a_store_see_each_others_writes(tmp_path: Path) -> None:
    # two Recommenders on one store stand for two service workers (each has its own SQLite connection)
    config = make_config(tmp_path, snapshot_every=1000)
    a = Recommender.load(config)
    a.upsert_items(ITEMS)
    b = Recommender.load(config)
    a.upsert_items([{"id": "kayak", "title": "Sea kayak", "text": "touring kayak with paddle"}])
    assert ids(b.recommend(query="kayak paddle", k=1)) == ["kayak"]
    assert ids(b.similar("kayak", k=1))
    b.delete_items(["kayak"])
    assert "kayak" not in ids(a.recommend(query="kayak paddle", k=6))
    a.add_interactions([Interaction("u1", "tent", 1.0), Interaction("u1", "bag", 2.0)])
    assert b.health()["users_in_log"] == 1
    # interleaved writes: b writes without having seen a's newest write; its snapshot must not skip it
    a.upsert_items([{"id": "canoe", "title": "Open canoe", "text": "canoe for lakes"}])
    b.upsert_items([{"id": "raft", "title": "River raft", "text": "raft for rivers"}])
    b.save()  # the snapshot that is loaded below: both then "crash" (no final snapshot)
    a.catalog.close()
    b.catalog.close()
    c = Recommender.load(config)
    assert c.health()["indexed"] == len(ITEMS) + 2
    assert ids(c.recommend(query="open canoe for lakes", k=1)) == ["canoe"]
    assert ids(c.recommend(query="river raft", k=1)) == ["raft"]
    c.close()


def test_added_at_orders_untried_items_and_feeds_freshness(tmp_path: Path, encoder: HashingEncoder) -> None:
    rec = Recommender.load(make_config(tmp_path), encoder=encoder)
    rec.upsert_items([{"id": "new", "title": "Lamp", "added_at": 3000},
                      {"id": "old", "title": "Chair", "added_at": 1000}, {"id": "undated", "title": "Desk"}])
    assert ids(rec.recommend([], k=3)) == ["new", "old", "undated"]  # no interactions: newest added_at first
    assert rec._item_ages().freshness(np.array([rec._key_of["new"], rec._key_of["old"]])).tolist() == [1.0, 0.0]
    rec.delete_items(["new"])
    assert rec._item_ages().added_at == {rec._key_of["old"]: 1000.0}
    rec.close()
