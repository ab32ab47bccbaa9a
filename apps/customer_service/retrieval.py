"""Answer a customer's question from the knowledge base: retrieve, re-rank, decide, cite.

The decision uses the final score of the best passage (when a re-ranker is configured, its (0, 1)
relevance blended with the embedder's cosine, ``rerank_weight * rerank + (1 - rerank_weight) *
cosine``, the weight picked on dev by ``make bench-bot``; else the embedder's cosine similarity):

* ``answer``  (score >= ``answer_threshold``): quote the passage and cite its title;
* ``clarify`` (``clarify_threshold`` <= score < ``answer_threshold``): ask which of the top
  titles the customer means;
* ``handoff`` (below ``clarify_threshold``): not sure enough; a person should take over.

The two scores live on different scales, so each has its own pair of thresholds.

Intent fusion: the caller may pass the intent classifier's calibrated probabilities (Rasa's
``intent_ranking``). With ``intent_weight > 0`` the candidates also get the passages of the top
intents (probability >= ``intent_floor``, at most ``intent_candidates`` intents), so the right
answer is reachable when FAISS missed it, and each hit scores ``score + intent_weight *
p(hit's intent)`` (0 for untagged general pages). That score has its own scale, so the decision
then uses the third pair, ``fused``. ``make bench-bot`` picks the weight and those thresholds on dev.
A ranking with no intent the knowledge base has (small talk only) leaves retrieval as without one.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from apps.customer_service.chunking import Chunk
from apps.customer_service.kb_index import EncodeFn, KbIndex, KbIndexError

log = logging.getLogger(__name__)
DECISIONS = ("answer", "clarify", "handoff")


@dataclass(frozen=True)
class Thresholds:
    answer: float
    clarify: float

    def __post_init__(self) -> None:
        if not self.clarify <= self.answer:
            raise ValueError(f"clarify threshold {self.clarify} is above the answer threshold {self.answer}; "
                             "expected clarify <= answer")


@dataclass(frozen=True)
class RetrievalConfig:
    """How many passages to fetch and re-rank, and when to answer, clarify or hand off."""

    top_k: int = 3                 # passages returned with an answer (>= 1)
    candidates: int = 3            # passages the re-ranker reads (>= top_k); its cost (latency) grows linearly
    use_reranker: bool = True      # re-rank when a re-ranker is loaded
    rerank_weight: float = 1.0     # (0, 1]: share of the re-ranker in the final score (the rest: cosine)
    cosine: Thresholds = field(default_factory=lambda: Thresholds(answer=0.55, clarify=0.40))
    rerank: Thresholds = field(default_factory=lambda: Thresholds(answer=0.50, clarify=0.20))
    clarify_options: int = 2       # titles offered in a clarifying question
    max_query_chars: int = 1000    # longer questions are cut (embedders read ~128 tokens anyway)
    # intent fusion (off at 0: the weight and the fused thresholds are tuned on dev for one intent model)
    intent_weight: float = 0.0     # >= 0: final score = score + intent_weight * p(passage's intent)
    intent_candidates: int = 3     # passages of at most this many top intents join the candidates
    intent_floor: float = 0.05     # ... when their probability is at least this
    fused: Thresholds = field(default_factory=lambda: Thresholds(answer=1.0, clarify=0.5))

    def __post_init__(self) -> None:
        if self.top_k < 1 or self.candidates < self.top_k:
            raise ValueError(f"top_k={self.top_k}, candidates={self.candidates}; expected 1 <= top_k <= candidates")
        if not 0.0 < self.rerank_weight <= 1.0:
            raise ValueError(f"rerank_weight={self.rerank_weight}; expected a share in (0, 1]")
        if not (math.isfinite(self.intent_weight) and self.intent_weight >= 0.0):
            raise ValueError(f"intent_weight={self.intent_weight}; expected a finite number >= 0")
        if self.intent_candidates < 0:
            raise ValueError(f"intent_candidates={self.intent_candidates}; expected an integer >= 0")
        if not 0.0 <= self.intent_floor <= 1.0:
            raise ValueError(f"intent_floor={self.intent_floor}; expected a probability in [0, 1]")


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float                   # the final score (re-ranker's blended with cosine when re-ranked, else cosine)
    cosine: float
    rerank: float | None = None
    intent_prob: float | None = None  # p(chunk's intent) when fused with intent scores (0 for untagged); else None


@dataclass(frozen=True)
class Answer:
    decision: str                  # one of DECISIONS
    confidence: float              # the best hit's final score (0 when nothing was found)
    hits: tuple[Hit, ...]

    @property
    def best(self) -> Hit | None:
        return self.hits[0] if self.hits else None

    def to_dict(self) -> dict:
        best = self.best
        return {"decision": self.decision, "confidence": round(self.confidence, 4),
                "title": best.chunk.title if best else None, "text": best.chunk.text if best else None,
                "intent": best.chunk.intent if best else None, "source": best.chunk.doc_id if best else None,
                "options": [hit.chunk.title for hit in self.hits]}


class IndexHolder:
    """The live index, swapped for a newer build when ``card.json`` changes; a failed reload keeps the old one."""

    def __init__(self, folder: Path, check_every_s: float = 2.0) -> None:
        self.folder = Path(folder)
        self.check_every_s = check_every_s
        self._index: KbIndex | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def get(self) -> KbIndex:
        now = time.monotonic()
        if self._index is not None and now - self._checked < self.check_every_s:
            return self._index
        with self._lock:
            self._checked = now
            build_id = self._build_id()
            if self._index is None or (build_id and build_id != self._index.card["build_id"]):
                try:
                    self._index = KbIndex.load(self.folder)
                    log.info("serving KB index build %s (%d passages)", self._index.card["build_id"],
                             len(self._index.chunks))
                except KbIndexError:
                    if self._index is None:
                        raise
                    log.exception("a new KB index at %s failed to load; still serving build %s", self.folder,
                                  self._index.card["build_id"])
        return self._index

    def _build_id(self) -> str | None:
        try:
            return json.loads((self.folder / "card.json").read_text(encoding="utf-8")).get("build_id")
        except (OSError, ValueError):
            return None  # mid-swap or missing: keep what we have


class Retriever:
    """Embedder + index (+ optional re-ranker) -> :class:`Answer`. Heavy parts are passed in."""

    def __init__(self, encode: EncodeFn, index: IndexHolder | KbIndex, reranker=None,
                 config: RetrievalConfig = RetrievalConfig()) -> None:
        self.encode = encode
        self.index = index
        self.reranker = reranker  # core.inference.reranker.Reranker or None
        self.config = config

    def _current(self) -> KbIndex:
        return self.index.get() if isinstance(self.index, IndexHolder) else self.index

    def search(self, query: str, k: int | None = None,
               intent_scores: Mapping[str, float] | None = None) -> list[Hit]:
        """The best passages for ``query``, best first: FAISS top candidates, re-ranked when configured.

        ``intent_scores`` (intent name -> calibrated probability) fuses the intent classifier in
        when ``intent_weight > 0`` (see the module doc); without them the result is unchanged.
        """
        if not isinstance(query, str) or not query.strip():
            raise ValueError(f"query is {query!r}; expected a non-empty text")
        cfg = self.config
        query = query.strip()[: cfg.max_query_chars]
        k = k or cfg.top_k
        probs = check_intent_scores(intent_scores) if cfg.intent_weight > 0 and intent_scores else None
        reranking = self.reranker is not None and cfg.use_reranker
        index = self._current()
        if probs:  # only intents with passages say anything about passages (a small-talk-only ranking: no fusion)
            probs = {name: p for name, p in probs.items() if index.chunks_of_intent(name)} or None
        vector = self.encode([query])
        found = index.search(vector, max(k, cfg.candidates) if reranking or probs else k)[0]
        hits = [Hit(chunk, cosine, cosine) for chunk, cosine in found]
        if probs:
            hits += self._intent_hits(index, vector, probs, {hit.chunk.chunk_id for hit in hits})
        if reranking and hits:
            scores = self.reranker.score(query, [hit.chunk.indexed_text for hit in hits])
            w = cfg.rerank_weight
            hits = [Hit(hit.chunk, w * float(s) + (1 - w) * hit.cosine, hit.cosine, float(s))
                    for hit, s in zip(hits, scores, strict=True)]
        if probs:
            hits = [replace(hit, score=hit.score + cfg.intent_weight * p, intent_prob=p)
                    for hit in hits for p in [probs.get(hit.chunk.intent, 0.0) if hit.chunk.intent else 0.0]]
        if (reranking or probs) and hits:
            hits.sort(key=lambda hit: -hit.score)
        return hits[:k]

    def _intent_hits(self, index: KbIndex, vector, probs: dict[str, float], present: set[int]) -> list[Hit]:
        """Passages of the top intents that FAISS did not return, with their cosine."""
        cfg = self.config
        top = [name for name, p in sorted(probs.items(), key=lambda item: -item[1]) if p >= cfg.intent_floor]
        wanted = [c for name in top[: cfg.intent_candidates] for c in index.chunks_of_intent(name) if c not in present]
        if not wanted:
            return []
        cosines = index.cosines(vector, wanted)
        return [Hit(index.chunks[c], cosines[c], cosines[c]) for c in wanted if c in cosines]

    def answer(self, query: str, intent_scores: Mapping[str, float] | None = None) -> Answer:
        hits = self.search(query, intent_scores=intent_scores)
        if not hits:
            return Answer("handoff", 0.0, ())
        cfg = self.config
        thresholds = (cfg.fused if hits[0].intent_prob is not None else cfg.rerank if hits[0].rerank is not None
                      else cfg.cosine)
        best = hits[0].score
        decision = "answer" if best >= thresholds.answer else "clarify" if best >= thresholds.clarify else "handoff"
        if decision == "clarify":
            distinct: dict[str, Hit] = {}
            for hit in hits:
                distinct.setdefault(hit.chunk.title, hit)
            hits = list(distinct.values())[: self.config.clarify_options]
        return Answer(decision, best, tuple(hits))


def check_intent_scores(intent_scores: Mapping[str, float]) -> dict[str, float]:
    """``intent_scores`` as a plain dict, each a probability; a bad entry raises naming it."""
    if not isinstance(intent_scores, Mapping):
        raise ValueError(f"intent_scores is a {type(intent_scores).__name__}; expected a mapping intent -> probability")
    checked = {}
    for name, p in intent_scores.items():
        if not isinstance(name, str) or isinstance(p, bool) or not isinstance(p, int | float) \
                or not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"intent score {name!r}: {p!r}; expected an intent name and a probability in [0, 1]")
        checked[name] = float(p)
    return checked
