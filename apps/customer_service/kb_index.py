"""The searchable knowledge base: passages, their embeddings in a FAISS index (core.index), and a card.

Layout of the folder (written by :func:`build_kb_index`, read by :meth:`KbIndex.load`)::

    card.json          format, build id, embedder, counts, fingerprint of the documents
    chunks.jsonl       one passage per line (chunk_id, doc_id, title, text, intent, line)
    entry_chunks.npy   (entries,) int64: the passage each index entry points at
    vectors/           core.index.VectorIndex folder: one vector per entry

A passage is indexed once for its own text and once per example question of its document
(``questions:`` in the front matter): questions are how customers ask, passages how the bank
answers, and a query that matches either should find the passage. The folder is built in a
staging folder and swapped in with one rename (core.atomic), so a running bot keeps serving
the old index until the new one is complete, and a failed ingestion leaves it untouched.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from apps.customer_service.chunking import Chunk, chunk_documents
from apps.customer_service.knowledge_base import KbDocument
from core.atomic import atomic_directory
from core.index import IndexConfig, VectorIndex

log = logging.getLogger(__name__)

CARD_FORMAT = "textml.customer_service.kb_index/1"
EncodeFn = Callable[[list[str]], np.ndarray]  # texts -> (n, dim) float32, L2-normalised


class KbIndexError(ValueError):
    """A knowledge-base index folder that is missing or unreadable; the message says how to rebuild it."""


@dataclass(frozen=True)
class IngestConfig:
    """How documents become index entries."""

    max_words: int = 80            # passage length cap (see chunking.chunk_documents)
    index_questions: bool = True   # also index each document's example questions
    index_kind: str = "flat"       # the KB is small: exact search


def fingerprint(documents: list[KbDocument]) -> str:
    digest = hashlib.sha256()
    for doc in documents:
        digest.update(json.dumps([doc.doc_id, doc.title, doc.intent, doc.topic, doc.questions, doc.body]).encode())
    return digest.hexdigest()


def build_kb_index(documents: list[KbDocument], encode: EncodeFn, target: Path, embedder_name: str,
                   config: IngestConfig = IngestConfig()) -> dict:
    """Chunk, embed and index ``documents`` into ``target``, atomically; returns the card."""
    started = time.monotonic()
    chunks = chunk_documents(documents, config.max_words)
    texts = [chunk.indexed_text for chunk in chunks]
    entry_chunks = [chunk.chunk_id for chunk in chunks]
    if config.index_questions:
        first_chunk: dict[str, int] = {}
        for chunk in chunks:
            first_chunk.setdefault(chunk.doc_id, chunk.chunk_id)
        for doc in documents:
            for question in doc.questions:
                texts.append(question)
                entry_chunks.append(first_chunk[doc.doc_id])
    vectors = encode(texts)  # (entries, dim)
    if vectors.ndim != 2 or len(vectors) != len(texts):
        raise KbIndexError(f"the encoder returned shape {vectors.shape} for {len(texts)} texts; expected (n, dim)")
    index = VectorIndex(vectors.shape[1], IndexConfig(kind=config.index_kind, use_gpu=False))
    index.build(vectors, np.arange(len(texts), dtype=np.int64))
    card = {
        "format": CARD_FORMAT, "build_id": uuid.uuid4().hex, "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                       time.gmtime()),
        "embedder": embedder_name, "dim": int(vectors.shape[1]), "documents": len(documents),
        "chunks": len(chunks), "entries": len(texts), "kb_sha256": fingerprint(documents),
        "intents": sorted({doc.intent for doc in documents if doc.intent}), "config": asdict(config),
    }
    with atomic_directory(Path(target), replace=True) as staging:
        with open(staging / "chunks.jsonl", "w", encoding="utf-8") as handle:
            for chunk in chunks:
                handle.write(json.dumps(asdict(chunk), ensure_ascii=False) + "\n")
        np.save(staging / "entry_chunks.npy", np.asarray(entry_chunks, dtype=np.int64), allow_pickle=False)
        index.save(staging / "vectors")
        (staging / "card.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    log.info("built KB index %s: %d documents, %d passages, %d entries in %.1f s", target, len(documents),
             len(chunks), len(texts), time.monotonic() - started)
    return card


@dataclass
class KbIndex:
    """A loaded knowledge-base index: search returns passages, best first, one per passage."""

    card: dict
    chunks: list[Chunk]
    entry_chunks: np.ndarray  # (entries,) int64
    vectors: VectorIndex
    by_intent: dict[str, tuple[int, ...]] = field(init=False, repr=False)  # intent -> its passages' chunk ids

    def __post_init__(self) -> None:
        by_intent: dict[str, list[int]] = {}
        for chunk in self.chunks:
            if chunk.intent:
                by_intent.setdefault(chunk.intent, []).append(chunk.chunk_id)
        self.by_intent = {name: tuple(ids) for name, ids in by_intent.items()}

    def chunks_of_intent(self, intent: str) -> tuple[int, ...]:
        """The chunk ids of the passages tagged with ``intent`` (none for an intent the KB lacks)."""
        return self.by_intent.get(intent, ())

    @classmethod
    def load(cls, folder: Path) -> KbIndex:
        folder = Path(folder)
        try:
            card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
            if card.get("format") != CARD_FORMAT:
                raise ValueError(f"format {card.get('format')!r}, expected {CARD_FORMAT!r}")
            with open(folder / "chunks.jsonl", encoding="utf-8") as handle:
                chunks = [Chunk(**json.loads(line)) for line in handle if line.strip()]
            entry_chunks = np.load(folder / "entry_chunks.npy", allow_pickle=False)
            vectors = VectorIndex.load(folder / "vectors", use_gpu=False)
        except (OSError, ValueError, TypeError, KeyError) as error:
            raise KbIndexError(f"cannot load the knowledge-base index at {folder} ({error}); build it with "
                               "`python -m apps.customer_service ingest`") from error
        if len(entry_chunks) != len(vectors) or (len(entry_chunks) and entry_chunks.max() >= len(chunks)):
            raise KbIndexError(f"{folder} is inconsistent ({len(vectors)} vectors, {len(entry_chunks)} entries, "
                               f"{len(chunks)} passages); rebuild it with `python -m apps.customer_service ingest`")
        return cls(card, chunks, entry_chunks, vectors)

    def search(self, query_vectors: np.ndarray, k: int) -> list[list[tuple[Chunk, float]]]:
        """Per query (q, dim): up to ``k`` distinct passages with their best entry's cosine, best first."""
        fetch = min(len(self.entry_chunks), max(k * 4, k + 8))  # several entries may point at one passage
        scores, ids = self.vectors.search(query_vectors, fetch)
        results = []
        for row_scores, row_ids in zip(scores, ids, strict=True):
            best: dict[int, float] = {}
            for score, entry in zip(row_scores, row_ids, strict=True):
                if entry < 0:
                    continue
                chunk_id = int(self.entry_chunks[entry])
                if chunk_id not in best:
                    best[chunk_id] = float(score)
                if len(best) == k:
                    break
            results.append([(self.chunks[c], s) for c, s in best.items()])
        return results

    def cosines(self, query_vector: np.ndarray, chunk_ids: list[int]) -> dict[int, float]:
        """Best-entry cosine of each passage in ``chunk_ids`` for one query (1, dim).

        Searches every entry: exact with the flat index the KB uses, and cheap at KB size (hundreds
        of entries); used for the few passages intent fusion adds that FAISS's top k missed.
        """
        wanted, best = set(chunk_ids), {}
        scores, ids = self.vectors.search(query_vector, len(self.entry_chunks))
        for score, entry in zip(scores[0], ids[0], strict=True):
            if entry >= 0:
                chunk_id = int(self.entry_chunks[entry])
                if chunk_id in wanted and chunk_id not in best:
                    best[chunk_id] = float(score)
        return best
