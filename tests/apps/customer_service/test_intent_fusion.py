"""Intent fusion in retrieval on the small real index: the classifier's probabilities re-rank the candidates."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from apps.customer_service.actions import ActionAnswerFromKb, intent_ranking
from apps.customer_service.kb_index import KbIndex
from apps.customer_service.retrieval import RetrievalConfig, Retriever, Thresholds
from apps.customer_service.tickets import TicketStore

# MiniLM ranks "Lost or stolen card" first and the right answer, "When your card will arrive", second
QUERY = "where is my card"
FUSING = RetrievalConfig(top_k=1, candidates=1, intent_weight=1.0)  # FAISS alone returns only the wrong passage


def test_the_index_knows_its_passages_by_intent(small_index: KbIndex) -> None:
    assert small_index.chunks_of_intent("card_arrival") == (0,)
    assert small_index.chunks_of_intent("greet") == ()
    assert set(small_index.by_intent) == {"card_arrival", "exchange_rate", "lost_or_stolen_card"}


def test_intent_scores_lift_the_right_passage_faiss_ranked_second(small_index: KbIndex, embedder) -> None:
    plain = Retriever(embedder.encode, small_index).search(QUERY, k=2)
    assert [hit.chunk.intent for hit in plain] == ["lost_or_stolen_card", "card_arrival"]
    fused = Retriever(embedder.encode, small_index, config=FUSING).search(
        QUERY, intent_scores={"card_arrival": 0.8, "lost_or_stolen_card": 0.15, "greet": 0.05})
    best = fused[0]
    assert best.chunk.intent == "card_arrival" and best.intent_prob == pytest.approx(0.8)
    assert best.score == pytest.approx(best.cosine + 0.8) and best.cosine == pytest.approx(plain[1].cosine)


def test_without_intent_scores_nothing_changes(small_index: KbIndex, embedder) -> None:
    expected = Retriever(embedder.encode, small_index).search(QUERY, k=3)
    for retriever, scores in ((Retriever(embedder.encode, small_index, config=replace(FUSING, top_k=3,
                                                                                       candidates=3)), None),
                              (Retriever(embedder.encode, small_index, config=RetrievalConfig()),
                               {"card_arrival": 0.9})):  # intent_weight 0: scores ignored
        hits = retriever.search(QUERY, intent_scores=scores)
        assert [(h.chunk.chunk_id, h.score, h.intent_prob) for h in hits] == [
            (h.chunk.chunk_id, h.score, None) for h in expected]


def test_an_untagged_general_page_is_never_boosted(small_index: KbIndex, embedder) -> None:
    retriever = Retriever(embedder.encode, small_index, config=replace(FUSING, top_k=4, candidates=4))
    hits = retriever.search("cash machine charges", intent_scores={"card_arrival": 0.3, "exchange_rate": 0.3})
    fees = next(hit for hit in hits if hit.chunk.intent is None)
    assert fees.intent_prob == 0.0 and fees.score == pytest.approx(fees.cosine)
    assert hits[0].chunk.intent in ("card_arrival", "exchange_rate")  # the boosted ones now lead


def test_small_talk_intents_take_no_candidate_slot(small_index: KbIndex, embedder) -> None:
    retriever = Retriever(embedder.encode, small_index, config=replace(FUSING, intent_candidates=1))
    hits = retriever.search(QUERY, intent_scores={"greet": 0.6, "card_arrival": 0.3})
    assert hits[0].chunk.intent == "card_arrival"
    below_floor = retriever.search(QUERY, intent_scores={"card_arrival": 0.01})  # under intent_floor: not added
    assert below_floor[0].chunk.intent == "lost_or_stolen_card"
    only_small_talk = retriever.search(QUERY, intent_scores={"greet": 0.9})  # says nothing about passages
    assert only_small_talk[0].intent_prob is None and only_small_talk[0].chunk.intent == "lost_or_stolen_card"


def test_the_fused_thresholds_decide(small_index: KbIndex, embedder) -> None:
    scores = {"card_arrival": 0.8}
    strict = Retriever(embedder.encode, small_index, config=replace(FUSING, fused=Thresholds(answer=5.0, clarify=4.0)))
    assert strict.answer(QUERY, intent_scores=scores).decision == "handoff"
    assert strict.answer("My card still has not arrived").decision == "answer"  # no scores: the cosine pair
    lenient = Retriever(embedder.encode, small_index, config=replace(FUSING, fused=Thresholds(answer=1.5, clarify=0.5)))
    answer = lenient.answer(QUERY, intent_scores=scores)
    assert answer.decision == "answer" and answer.best.chunk.intent == "card_arrival"
    assert answer.confidence == pytest.approx(answer.best.cosine + 0.8)
    assert lenient.answer(QUERY, intent_scores={"card_arrival": 0.1}).decision == "clarify"


class KeywordReranker:
    def score(self, query: str, passages: list[str]):
        import numpy as np

        return np.array([0.9 if "posted" in p else 0.2 for p in passages], dtype=np.float32)


def test_added_passages_are_re_ranked_too(small_index: KbIndex, embedder) -> None:
    config = replace(FUSING, rerank_weight=0.5)
    hits = Retriever(embedder.encode, small_index, KeywordReranker(), config).search(
        QUERY, intent_scores={"card_arrival": 0.5})
    best = hits[0]
    assert best.chunk.intent == "card_arrival" and best.rerank == pytest.approx(0.9)
    assert best.score == pytest.approx(0.5 * 0.9 + 0.5 * best.cosine + 0.5)


@pytest.mark.parametrize(("scores", "message"), [
    ({"card_arrival": 1.5}, "intent score 'card_arrival': 1.5; expected"),
    ({"card_arrival": "high"}, "intent score 'card_arrival': 'high'"),
    ([("card_arrival", 0.5)], "intent_scores is a list; expected a mapping"),
])
def test_bad_intent_scores_are_rejected(small_index: KbIndex, embedder, scores, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Retriever(embedder.encode, small_index, config=FUSING).search(QUERY, intent_scores=scores)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("intent_weight", -1.0, "intent_weight=-1.0; expected a finite number >= 0"),
    ("intent_floor", 2.0, "intent_floor=2.0; expected a probability"),
    ("intent_candidates", -1, "intent_candidates=-1; expected an integer >= 0"),
])
def test_bad_fusion_config_is_rejected(field: str, value, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetrievalConfig(**{field: value})


def tracker_with_ranking(text: str, ranking) -> Tracker:
    return Tracker("cust-9", {"failed_attempts": 0.0},
                   {"text": text, "intent": {"name": "nlu_fallback", "confidence": 0.5}, "intent_ranking": ranking},
                   [{"event": "user", "text": text}], False, None, {}, None)


def test_intent_ranking_reads_names_and_confidences() -> None:
    ranking = [{"name": "nlu_fallback", "confidence": 0.52}, {"name": "card_arrival", "confidence": 0.45},
               {"name": "greet", "confidence": "x"}, {"confidence": 0.1}, "junk", {"name": "card_arrival",
                                                                                 "confidence": 0.01}]
    assert intent_ranking(tracker_with_ranking("hi", ranking)) == {"card_arrival": 0.45}
    assert intent_ranking(tracker_with_ranking("hi", None)) == {}
    assert intent_ranking(tracker_with_ranking("hi", "not a list")) == {}


def test_the_action_passes_the_ranking_to_the_retriever(small_index: KbIndex, embedder, tmp_path) -> None:
    config = replace(FUSING, fused=Thresholds(answer=1.2, clarify=0.5))
    action = ActionAnswerFromKb(Retriever(embedder.encode, small_index, config=config),
                                TicketStore(tmp_path / "tickets.sqlite3"))
    dispatcher = CollectingDispatcher()
    ranking = [{"name": "nlu_fallback", "confidence": 0.52}, {"name": "card_arrival", "confidence": 0.9}]
    asyncio.run(action.run(dispatcher, tracker_with_ranking(QUERY, ranking), {}))
    assert dispatcher.messages[0]["text"].endswith("Source: When your card will arrive")
