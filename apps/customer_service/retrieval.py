"""Answer a customer's question from the knowledge base: retrieve, re-rank, decide, cite.

The decision uses the final score of the best passage (when a re-ranker is configured, its (0, 1)
relevance blended with the embedder's cosine, ``rerank_weight * rerank + (1 - rerank_weight) *
cosine``, the weight picked on dev by ``make bench-bot``; else the embedder's cosine similarity):

* ``answer``  (score >= ``answer_threshold``): quote the passage and cite its title;
* ``clarify`` (``clarify_threshold`` <= score < ``answer_threshold``): ask which of the top
  titles the customer means;
* ``handoff`` (below ``clarify_threshold``): not sure enough; a person should take over.

The two scores live on different scales, so each has its own pair of thresholds.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
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

    def __post_init__(self) -> None:
        if self.top_k < 1 or self.candidates < self.top_k:
            raise ValueError(f"top_k={self.top_k}, candidates={self.candidates}; expected 1 <= top_k <= candidates")
        if not 0.0 < self.rerank_weight <= 1.0:
            raise ValueError(f"rerank_weight={self.rerank_weight}; expected a share in (0, 1]")


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float                   # the final score (re-ranker's blended with cosine when re-ranked, else cosine)
    cosine: float
    rerank: float | None = None


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

    def search(self, query: str, k: int | None = None) -> list[Hit]:
        """The best passages for ``query``, best first: FAISS top candidates, re-ranked when configured."""
        if not isinstance(query, str) or not query.strip():
            raise ValueError(f"query is {query!r}; expected a non-empty text")
        cfg = self.config
        query = query.strip()[: cfg.max_query_chars]
        k = k or cfg.top_k
        reranking = self.reranker is not None and cfg.use_reranker
        found = self._current().search(self.encode([query]), max(k, cfg.candidates) if reranking else k)[0]
        hits = [Hit(chunk, cosine, cosine) for chunk, cosine in found]
        if reranking and hits:
            scores = self.reranker.score(query, [hit.chunk.indexed_text for hit in hits])
            w = cfg.rerank_weight
            hits = [Hit(hit.chunk, w * float(s) + (1 - w) * hit.cosine, hit.cosine, float(s))
                    for hit, s in zip(hits, scores, strict=True)]
            hits.sort(key=lambda hit: -hit.score)
        return hits[:k]

    def answer(self, query: str) -> Answer:
        hits = self.search(query)
        if not hits:
            return Answer("handoff", 0.0, ())
        thresholds = self.config.rerank if hits[0].rerank is not None else self.config.cosine
        best = hits[0].score
        decision = "answer" if best >= thresholds.answer else "clarify" if best >= thresholds.clarify else "handoff"
        if decision == "clarify":
            distinct: dict[str, Hit] = {}
            for hit in hits:
                distinct.setdefault(hit.chunk.title, hit)
            hits = list(distinct.values())[: self.config.clarify_options]
        return Answer(decision, best, tuple(hits))
