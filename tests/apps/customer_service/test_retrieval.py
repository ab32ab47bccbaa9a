"""Ingestion and retrieval on a small real index (real MiniLM embedder, real FAISS through core.index)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from apps.customer_service.ingest import ingest
from apps.customer_service.intents import RetrievalIntents
from apps.customer_service.kb_index import KbIndex, KbIndexError
from apps.customer_service.knowledge_base import KnowledgeBaseError
from apps.customer_service.retrieval import IndexHolder, RetrievalConfig, Retriever, Thresholds

from .conftest import SMALL_KB, write_kb


def test_index_card_and_entries(small_index: KbIndex) -> None:
    card = small_index.card
    assert (card["documents"], card["chunks"]) == (4, 4)
    assert card["entries"] == 4 + 3  # one per passage + one per example question
    assert card["intents"] == ["card_arrival", "exchange_rate", "lost_or_stolen_card"]


@pytest.mark.parametrize(("question", "title"), [
    ("my new card hasn't come in the post yet", "When your card will arrive"),
    ("someone stole my card", "Lost or stolen card"),
    ("how much does it cost to take cash out of an ATM", "Fees overview"),
    ("which rate do you use to convert currencies", "Our exchange rates"),
])
def test_search_finds_the_right_passage(small_index: KbIndex, embedder, question: str, title: str) -> None:
    hits = Retriever(embedder.encode, small_index).search(question, k=3)
    assert hits[0].chunk.title == title
    assert len({hit.chunk.chunk_id for hit in hits}) == len(hits) == 3
    assert hits[0].score >= hits[1].score >= hits[2].score


def test_answer_clarify_and_handoff_by_thresholds(small_index: KbIndex, embedder) -> None:
    retriever = Retriever(embedder.encode, small_index)
    answer = retriever.answer("My card still has not arrived")
    assert answer.decision == "answer" and answer.best.chunk.intent == "card_arrival"
    assert answer.to_dict()["title"] == "When your card will arrive" and answer.confidence > 0.9
    assert retriever.answer("what is the capital of France?").decision == "handoff"
    unsure = Retriever(embedder.encode, small_index, config=replace(
        RetrievalConfig(), cosine=Thresholds(answer=0.999, clarify=0.0), clarify_options=2))
    clarify = unsure.answer("card")
    assert clarify.decision == "clarify" and len(clarify.hits) == 2
    with pytest.raises(ValueError, match="expected a non-empty text"):
        retriever.answer("   ")
    with pytest.raises(ValueError, match="clarify threshold 0.9 is above"):
        Thresholds(answer=0.5, clarify=0.9)


class KeywordReranker:
    """A stand-in cross-encoder that prefers passages mentioning 'interbank' (tests the re-rank path only)."""

    def score(self, query: str, passages: list[str]):
        import numpy as np

        return np.array([0.9 if "interbank" in p else 0.1 for p in passages], dtype=np.float32)


def test_reranker_reorders_and_its_thresholds_apply(small_index: KbIndex, embedder) -> None:
    config = RetrievalConfig(top_k=5, candidates=5)  # the re-ranker reads every passage of the small KB
    answer = Retriever(embedder.encode, small_index, KeywordReranker(), config).answer("my card has not arrived")
    assert answer.best.chunk.title == "Our exchange rates"
    assert answer.best.rerank == pytest.approx(0.9) and answer.decision == "answer"


def test_retrieval_intents_rank_the_nearest_passages_intents(small_index: KbIndex, embedder) -> None:
    ranked = RetrievalIntents(embedder.encode, small_index).rank(["I lost my card", "exchange rate?"], n=2)
    assert [row[0][0] for row in ranked] == ["lost_or_stolen_card", "exchange_rate"]
    assert all(len(row) == 2 and 0 <= row[0][1] <= 1 for row in ranked)


def test_failed_ingestion_leaves_the_live_index_untouched(tmp_path: Path, small_index_dir: Path, embedder) -> None:
    live = tmp_path / "index"
    shutil.copytree(small_index_dir, live)
    before = json.loads((live / "card.json").read_text())["build_id"]
    broken = write_kb(tmp_path / "kb", {**SMALL_KB, "answers/zz_broken.md": "---\ntitle: Broken\nintent: [x\n---\n"})
    with pytest.raises(KnowledgeBaseError, match=r"zz_broken.md:3: invalid YAML"):
        ingest(broken, live, "all-MiniLM-L6-v2", embedder=embedder)

    class FailingEncoder:
        def encode(self, texts):
            raise RuntimeError("encoder crashed half-way")

    good = write_kb(tmp_path / "good", SMALL_KB)
    with pytest.raises(RuntimeError, match="half-way"):
        ingest(good, live, "x", embedder=FailingEncoder())
    assert json.loads((live / "card.json").read_text())["build_id"] == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good", "index", "kb"]  # no staging leftovers
    KbIndex.load(live)


def test_index_holder_swaps_to_a_new_build_and_survives_a_bad_one(tmp_path: Path, small_index_dir: Path,
                                                                  embedder) -> None:
    live = tmp_path / "index"
    shutil.copytree(small_index_dir, live)
    holder = IndexHolder(live, check_every_s=0.0)
    first = holder.get().card["build_id"]
    more = {**SMALL_KB, "answers/pin_blocked.md": '---\nintent: pin_blocked\ntitle: "Blocked PIN"\n---\n\n'
                                                  "Unblock your PIN in the app under Cards, Security.\n"}
    ingest(write_kb(tmp_path / "kb", more), live, "all-MiniLM-L6-v2", embedder=embedder)
    assert holder.get().card["build_id"] != first and len(holder.get().chunks) == 5
    card = json.loads((live / "card.json").read_text())
    (live / "chunks.jsonl").write_text("not json\n")
    (live / "card.json").write_text(json.dumps({**card, "build_id": "corrupt"}))
    assert holder.get().card["build_id"] == card["build_id"]  # still serving the last good build
    with pytest.raises(KbIndexError, match="python -m apps.customer_service ingest"):
        KbIndex.load(live)
    with pytest.raises(KbIndexError, match="cannot load"):
        IndexHolder(tmp_path / "missing").get()


def test_stale_index_is_noticed(tmp_path: Path, small_index_dir: Path) -> None:
    from apps.customer_service.ingest import stale_reason

    kb = small_index_dir.parent / "kb"
    assert stale_reason(kb, small_index_dir, "all-MiniLM-L6-v2") is None
    assert "embedded with all-MiniLM-L6-v2, the bot now uses /models/kb-embedder/v2" in stale_reason(
        kb, small_index_dir, "/models/kb-embedder/v2")
    edited = SMALL_KB["general/fees.md"].replace("5 GBP each", "6 GBP each")
    changed = write_kb(tmp_path / "kb", {**SMALL_KB, "general/fees.md": edited})
    assert "changed since the index was built" in stale_reason(changed, small_index_dir, "all-MiniLM-L6-v2")
    assert "no readable index" in stale_reason(kb, tmp_path / "missing", "all-MiniLM-L6-v2")
