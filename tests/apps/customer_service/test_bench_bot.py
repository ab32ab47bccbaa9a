"""The bot benchmark's retrieval scoring on small fixtures (no BANKING77, no training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from apps.customer_service.knowledge_base import load_knowledge_base
from apps.customer_service.retrieval import RetrievalConfig, Retriever
from benchmarks import bot

from .conftest import write_kb


class FakeCrossEncoder:
    """Scores (query, passage) pairs by shared words: enough to check the plumbing, not the model."""

    def predict(self, pairs, **_kwargs):
        return np.array([len(set(q.lower().split()) & set(p.lower().split())) / 10 for q, p in pairs],
                        dtype=np.float32)


class FakeReranker:
    model = FakeCrossEncoder()

    def score(self, query, passages):
        return self.model.predict([(query, p) for p in passages])


def test_fuse_blends_candidates_and_keeps_the_rest_below() -> None:
    first = np.array([[0.9, 0.8, 0.1, 0.7]], dtype=np.float32)
    order = np.array([[0, 1]])
    rerank = np.array([[0.2, 1.0]], dtype=np.float32)
    only_rerank = bot.fuse(first, order, rerank, 1.0)
    assert only_rerank[0, :2] == pytest.approx([0.2, 1.0]) and only_rerank.argmax() == 1
    half = bot.fuse(first, order, rerank, 0.5)
    assert half[0, :2] == pytest.approx([0.55, 0.9])
    assert half[0, 3] > half[0, 2] and half[0, 3] < half[0, :2].min()  # non-candidates: old order, below


def test_pick_rerank_weight_prefers_better_dev_then_larger_share() -> None:
    first = np.array([[0.9, 0.5], [0.9, 0.5]], dtype=np.float32)
    order = np.array([[0, 1], [0, 1]])
    rerank = np.array([[0.0, 0.6], [0.0, 0.6]], dtype=np.float32)  # the re-ranker prefers doc 1
    weight, table = bot.pick_rerank_weight(first, order, rerank, [{0}, {0}], (1.0, 0.75, 0.5, 0.25))
    assert weight == 0.25 and table["1.0"]["hit1"] == 0.0 and table["0.25"]["hit1"] == 1.0
    weight, _ = bot.pick_rerank_weight(first, order, rerank, [{1}, {1}], (0.25, 1.0, 0.75))
    assert weight == 1.0  # all three put doc 1 first: the largest share wins the tie


def test_bench_rerank_matches_the_bots_retriever(tmp_path: Path, small_index, embedder) -> None:
    """The benchmark's fused score for the top document is the score the bot answers with."""
    documents = load_knowledge_base(write_kb(tmp_path / "kb"))
    doc_ids = [doc.doc_id for doc in documents]
    query = "what exchange rate do you use at weekends"
    first = bot.doc_scores(small_index, embedder.encode([query]), doc_ids)
    order, rerank = bot.rerank_candidates(FakeReranker(), documents, [query], first, top=3)
    fused = bot.fuse(first, order, rerank, 0.5)
    retriever = Retriever(embedder.encode, small_index, FakeReranker(),
                          RetrievalConfig(top_k=1, candidates=3, rerank_weight=0.5))
    best = retriever.search(query)[0]
    assert documents[int(fused.argmax())].doc_id == best.chunk.doc_id
    assert fused.max() == pytest.approx(best.score, abs=1e-5)


def test_suggest_thresholds_and_metrics() -> None:
    best = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    correct = np.array([1, 1, 1, 0, 0], dtype=bool)
    found = bot.suggest_thresholds(best, correct, answer_precision=1.0, clarify_precision=0.6)
    assert found == {"answer": 0.7, "answer_coverage": 0.6, "clarify": 0.5, "clarify_coverage": 1.0}
    scores = np.array([[0.1, 0.9, 0.3], [0.8, 0.1, 0.2]])
    assert bot.metrics(scores, [{1}, {2}]) == {"hit1": 0.5, "recall5": 1.0, "mrr10": 0.75, "queries": 2}


def test_rerank_weight_outside_its_range_is_rejected() -> None:
    with pytest.raises(ValueError, match="rerank_weight=0.0; expected a share in"):
        RetrievalConfig(rerank_weight=0.0)
