"""The shipped knowledge base is complete and the parser names the file and line of every problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.customer_service.chunking import chunk_documents
from apps.customer_service.knowledge_base import (
    KnowledgeBaseError,
    intents_covered,
    load_knowledge_base,
    parse_document,
)
from apps.customer_service.settings import APP_DIR

from .conftest import SMALL_KB, write_kb

SHIPPED = APP_DIR / "knowledge"


def test_shipped_kb_answers_all_77_intents_and_has_general_pages() -> None:
    documents = load_knowledge_base(SHIPPED)
    answers = [doc for doc in documents if doc.intent]
    assert len(intents_covered(documents)) == 77
    assert len(answers) >= 77
    assert {"fees", "cards", "transfers", "security"} <= {doc.topic for doc in documents if doc.topic}
    for doc in answers:
        sentences = [s for s in doc.body.replace("!", ".").split(". ") if s.strip()]
        assert 2 <= len(sentences) <= 5, (doc.doc_id, len(sentences))
        assert doc.questions, doc.doc_id
    assert {"reverted_card_payment?", "Refund_not_showing_up", "card_swallowed"} <= intents_covered(documents)


def test_parse_reads_front_matter_and_body_line(tmp_path: Path) -> None:
    write_kb(tmp_path)
    doc = parse_document(tmp_path / "answers/card_arrival.md", tmp_path)
    assert (doc.doc_id, doc.intent) == ("answers/card_arrival.md", "card_arrival")
    assert doc.title == "When your card will arrive"
    assert doc.questions == ("My card still has not arrived",)
    assert doc.body.startswith("Cards are posted") and doc.body_line == 8


@pytest.mark.parametrize(("text", "line", "fragment"), [
    ("no front matter\n", 1, "front matter to open"),
    ("---\ntitle: x\nintent: a\n", 3, "never closed"),
    ("---\ntitle: x\nintent: [a\n---\nbody\n", 3, "invalid YAML"),
    ("---\nintent: card_arrival\n---\nbody\n", 1, "`title` is None"),
    ("---\ntitle: T\nintent: card_arrival\ncolour: red\n---\nbody\n", 4, "unknown front-matter key"),
    ("---\ntitle: T\nintent: card_arrival\n---\n\n  \n", 5, "no text after its front matter"),
    ("---\ntitle: T\nintent: a\ntopic: b\n---\nbody\n", 2, "exactly one of `intent:`"),
    ("---\ntitle: T\nintent: has space\n---\nbody\n", 3, "expected an intent name"),
    ("---\ntitle: T\nintent: a\nquestions: just one\n---\nbody\n", 4, "expected a list"),
])
def test_parse_errors_name_file_and_line(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    path = tmp_path / "bad.md"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(KnowledgeBaseError) as caught:
        parse_document(path)
    assert caught.value.line == line, str(caught.value)
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert fragment in str(caught.value)


def test_non_utf8_and_duplicate_titles_and_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "latin.md").write_bytes(b"---\ntitle: caf\xe9\n")
    with pytest.raises(KnowledgeBaseError, match=r"latin.md:2: is not UTF-8"):
        parse_document(tmp_path / "latin.md")
    kb = write_kb(tmp_path / "kb", {**SMALL_KB, "answers/copy.md": SMALL_KB["answers/card_arrival.md"].replace(
        "intent: card_arrival", "intent: card_delivery_estimate")})
    with pytest.raises(KnowledgeBaseError, match="also used by"):
        load_knowledge_base(kb)
    (tmp_path / "empty").mkdir()
    with pytest.raises(KnowledgeBaseError, match="no \\*.md documents"):
        load_knowledge_base(tmp_path / "empty")


def test_chunking_drops_headings_splits_long_text_and_keeps_lines(tmp_path: Path) -> None:
    documents = load_knowledge_base(write_kb(tmp_path))
    chunks = chunk_documents(documents, max_words=10)
    fees = [c for c in chunks if c.doc_id == "general/fees.md"]
    assert [c.text for c in fees] == ["ATM withdrawals are free up to 200 GBP a month, then 2%.",
                                     "Extra physical cards cost 5 GBP each."]
    assert [c.line for c in fees] == [8, 10]
    assert [c.chunk_id for c in chunks] == list(range(len(chunks)))
    with pytest.raises(ValueError, match="max_words is 3"):
        chunk_documents(documents, max_words=3)
