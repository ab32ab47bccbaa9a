"""Split knowledge-base documents into passages small enough to embed and to quote back to a customer."""

from __future__ import annotations

import re
from dataclasses import dataclass

from apps.customer_service.knowledge_base import KbDocument

HEADING = re.compile(r"^\s{0,3}#{1,6}\s+")


@dataclass(frozen=True)
class Chunk:
    """A passage of one document: what is embedded (``title`` + ``text``) and what the bot quotes (``text``)."""

    chunk_id: int
    doc_id: str
    title: str
    text: str
    intent: str | None
    line: int  # where the passage starts in its file

    @property
    def indexed_text(self) -> str:
        return f"{self.title}. {self.text}"


def chunk_documents(documents: list[KbDocument], max_words: int = 80) -> list[Chunk]:
    """Paragraph-based chunks of at most ~``max_words`` words; chunk ids are 0..n-1 in document order.

    Paragraphs (blank-line separated) are packed greedily; a single paragraph longer than
    ``max_words`` is split on sentence ends. Markdown headings are dropped (the title is kept
    separately and cited), so a passage is plain prose.
    """
    if max_words < 10:
        raise ValueError(f"max_words is {max_words}; passages need at least 10 words to be useful")
    chunks: list[Chunk] = []
    for doc in documents:
        for line, text in _passages(doc, max_words):
            chunks.append(Chunk(len(chunks), doc.doc_id, doc.title, text, doc.intent, line))
    return chunks


def _passages(doc: KbDocument, max_words: int) -> list[tuple[int, str]]:
    paragraphs: list[tuple[int, str]] = []  # (first line, text)
    current: list[str] = []
    start = doc.body_line
    for offset, raw in enumerate(doc.body.splitlines()):
        if HEADING.match(raw) or not raw.strip():
            if current:
                paragraphs.append((start, " ".join(current)))
                current = []
            continue
        if not current:
            start = doc.body_line + offset
        current.append(raw.strip())
    if current:
        paragraphs.append((start, " ".join(current)))

    pieces: list[tuple[int, str]] = []
    for line, paragraph in paragraphs:
        sentences = re.split(r"(?<=[.!?])\s+", paragraph)
        part: list[str] = []
        for sentence in sentences:
            if part and len(" ".join(part + [sentence]).split()) > max_words:
                pieces.append((line, " ".join(part)))
                part = []
            part.append(sentence)
        if part:
            pieces.append((line, " ".join(part)))

    packed: list[tuple[int, str]] = []
    for line, piece in pieces:
        if packed and len(packed[-1][1].split()) + len(piece.split()) <= max_words:
            packed[-1] = (packed[-1][0], f"{packed[-1][1]} {piece}")
        else:
            packed.append((line, piece))
    return packed
