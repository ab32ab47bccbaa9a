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


class Doc:
    def __init__(self, doc_id: str, intent: str | None, title: str = "t", body: str = "b") -> None:
        self.doc_id, self.intent, self.title, self.body = doc_id, intent, title, body


TOY_DOCS = [Doc("a", "card_arrival"), Doc("b", "exchange_rate"), Doc("c", None), Doc("d", "pin_blocked")]


def test_intent_doc_probs_and_candidates_on_toy_matrices() -> None:
    classes = ["exchange_rate", "card_arrival", "greet", "pin_blocked"]
    probs = np.array([[0.1, 0.7, 0.17, 0.03], [0.02, 0.03, 0.05, 0.9]], dtype=np.float32)
    doc_probs = bot.intent_doc_probs(probs, classes, TOY_DOCS)
    np.testing.assert_allclose(doc_probs, [[0.7, 0.1, 0.0, 0.03], [0.03, 0.02, 0.0, 0.9]], rtol=1e-6)
    mask = bot.intent_candidates(doc_probs, TOY_DOCS, top=3, floor=0.05)
    assert mask.tolist() == [[True, True, False, False], [False, False, False, True]]  # p >= floor, never untagged
    assert bot.intent_candidates(doc_probs, TOY_DOCS, top=1, floor=0.05).tolist() == [
        [True, False, False, False], [False, False, False, True]]
    assert bot.top_candidates(np.array([[0.1, 0.9, 0.5, 0.2]]), 2).tolist() == [[False, True, True, False]]


def test_fuse_intents_adds_the_weighted_probability_to_candidates_only() -> None:
    first = np.array([[0.8, 0.7, 0.75, 0.1]], dtype=np.float32)
    doc_probs = np.array([[0.0, 0.6, 0.0, 0.9]], dtype=np.float32)
    candidates = np.array([[True, True, True, False]])
    fused = bot.fuse_intents(first, candidates, doc_probs, 0.5)
    assert fused[0, :3] == pytest.approx([0.8, 1.0, 0.75]) and fused.argmax() == 1
    assert fused[0, 3] < fused[0, :3].min()  # a non-candidate stays below, however probable its intent
    rerank = np.array([[0.2, 0.4, np.nan, np.nan]], dtype=np.float32)
    candidates = np.array([[True, True, False, False]])
    blended = bot.fuse_intents(first, candidates, doc_probs, 1.0, rerank, rerank_weight=0.5)
    assert blended[0, :2] == pytest.approx([0.5, 0.55 + 0.6])
    assert not np.isnan(blended).any()
    weight, table = bot.pick_intent_weight((first, np.ones((1, 4), bool), doc_probs, None), 1.0, [{1}],
                                           (0.25, 0.5, 1.0))
    assert weight == 0.25 and table["0.25"]["hit1"] == 1.0  # 0.7 + 0.15 > 0.8 already: the smallest wins ties


def test_rerank_matrix_scores_only_the_missing_pairs() -> None:
    calls = []

    class Counting(FakeCrossEncoder):
        def predict(self, pairs, **kwargs):
            calls.append(len(pairs))
            return super().predict(pairs, **kwargs)

    reranker = type("R", (), {"model": Counting()})()
    mask = np.array([[True, True, False, True]])
    known = np.array([[0.3, 0.4]], dtype=np.float32)
    scores = bot.rerank_matrix(reranker, TOY_DOCS, ["q"], mask, np.array([[1, 0]]), known)
    assert calls == [1] and scores[0, 1] == pytest.approx(0.3) and scores[0, 0] == pytest.approx(0.4)
    assert np.isnan(scores[0, 2]) and not np.isnan(scores[0, 3])


def test_bench_intent_fusion_matches_the_bots_retriever(tmp_path: Path, small_index, embedder) -> None:
    """Candidates (top FAISS + top intents' documents), re-ranking and fusion give the bot's best hit and score."""
    documents = load_knowledge_base(write_kb(tmp_path / "kb"))
    doc_ids = [doc.doc_id for doc in documents]
    query, scores = "where is my card", {"card_arrival": 0.6, "lost_or_stolen_card": 0.3, "exchange_rate": 0.1}
    classes = sorted(scores)
    probs = np.array([[scores[c] for c in classes]], dtype=np.float32)
    first = bot.doc_scores(small_index, embedder.encode([query]), doc_ids)
    doc_probs = bot.intent_doc_probs(probs, classes, documents)
    mask = bot.top_candidates(first, 1) | bot.intent_candidates(doc_probs, documents, 3, 0.05)
    order, known = bot.rerank_candidates(FakeReranker(), documents, [query], first, top=1)
    rerank = bot.rerank_matrix(FakeReranker(), documents, [query], mask, order, known)
    fused = bot.fuse_intents(first, mask, doc_probs, 2.0, rerank, rerank_weight=0.5)
    retriever = Retriever(embedder.encode, small_index, FakeReranker(),
                          RetrievalConfig(top_k=1, candidates=1, rerank_weight=0.5, intent_weight=2.0))
    best = retriever.search(query, intent_scores=scores)[0]
    assert documents[int(fused.argmax())].doc_id == best.chunk.doc_id
    assert fused.max() == pytest.approx(best.score, abs=1e-5)


def test_run_intent_fusion_and_its_recorded_thresholds(tmp_path: Path, small_index, embedder, monkeypatch) -> None:
    """The bench's fusion path end to end on the small KB with a stand-in classifier (its probabilities are
    the only input it needs), down to the fusion entry in the tuned-thresholds file."""
    import argparse
    import json

    import core.inference.classifier
    from apps.customer_service.settings import EMBEDDER_NAME, RERANKER_NAME

    documents = load_knowledge_base(write_kb(tmp_path / "kb"))
    doc_ids = [doc.doc_id for doc in documents]
    texts = ["where is my card", "my card never came", "someone took my card", "exchange rate at weekends"]
    labels = ["card_arrival", "card_arrival", "lost_or_stolen_card", "exchange_rate"]

    class Classifier:  # knows the right intent with p = 0.7
        classes = ["card_arrival", "exchange_rate", "lost_or_stolen_card"]

        def predict(self, batch):
            probs = np.full((len(batch), 3), 0.15, dtype=np.float32)
            for row, text in enumerate(batch):
                probs[row, self.classes.index(labels[texts.index(text)])] = 0.7
            return type("P", (), {"probabilities": probs})()

    monkeypatch.setattr(core.inference.classifier.TextClassifier, "load", classmethod(lambda cls, path: Classifier()))
    split = argparse.Namespace(texts=texts, labels=labels)
    first = bot.doc_scores(small_index, embedder.encode(texts), doc_ids)
    dev_scores, final_scores = {"finetuned": first.copy()}, {"finetuned": first.copy()}
    order, known = bot.rerank_candidates(FakeReranker(), documents, texts, first, top=1)
    reranked = {"reranker": FakeReranker(), "weight": 0.5, "dev": (order, known), "test": (order, known)}
    relevant = [{i for i, doc in enumerate(documents) if doc.intent == label} for label in labels]
    args = argparse.Namespace(rerank_top=1, intent_weight=None)
    setup = bot.run_intent_fusion(args, tmp_path / "intent", documents, split, split, dev_scores, final_scores,
                                  relevant, reranked)
    assert set(setup["methods"]) == {"finetuned_intent", "finetuned_rerank_intent"}
    assert bot.metrics(final_scores["finetuned_rerank_intent"], relevant)["hit1"] == 1.0
    assert bot.metrics(final_scores["finetuned_intent"], relevant)["hit1"] == 1.0

    thresholds = {name: bot.suggest_thresholds(s.max(axis=1), np.ones(len(texts), dtype=bool))
                  for name, s in {**dev_scores, "finetuned_rerank": first}.items()}
    models = {EMBEDDER_NAME: str(tmp_path / "emb"), RERANKER_NAME: str(tmp_path / "rr")}
    monkeypatch.setattr(bot, "_production", lambda registry, name: models[name])
    monkeypatch.setattr(bot, "tuned_path", lambda: tmp_path / "tuned.json")
    recorded = bot.record_retrieval_thresholds(None, thresholds, Path(models[EMBEDDER_NAME]),
                                               Path(models[RERANKER_NAME]), len(texts), 0.5, setup)
    fusion = json.loads((tmp_path / "tuned.json").read_text())["retrieval"]["fusion"]
    assert recorded["fusion"] == fusion and fusion["intent_model"] == str(tmp_path / "intent")
    assert fusion["method"] == "finetuned_rerank_intent"
    assert fusion["intent_weight"] == setup["methods"]["finetuned_rerank_intent"]["intent_weight"]
