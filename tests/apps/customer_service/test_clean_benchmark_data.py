"""No knowledge-base example question is (nearly) a BANKING77 test utterance.

The example questions are indexed for retrieval and are Rasa's NLU examples; the bot benchmark
asks the BANKING77 test utterances (the test split of ../shared/BENCHMARKS.md: test.csv). A
question that equals a test utterance (after lower-casing and stripping punctuation) or nearly
equals one (``difflib.SequenceMatcher`` ratio >= 0.9 on those normalised strings) lets the test
set look itself up. The fix is to write the question the way a customer would, clearly
differently; never copy dataset text into the repository.
"""

from __future__ import annotations

import difflib
import re

import pytest

from apps.customer_service.knowledge_base import load_knowledge_base
from apps.customer_service.settings import APP_DIR

NEAR = 0.9
PUNCTUATION = re.compile(r"[^\w\s]")


def normalise(text: str) -> str:
    """Lower case, punctuation removed, whitespace collapsed: "Where's my card?" -> "wheres my card"."""
    return " ".join(PUNCTUATION.sub("", text.lower()).split())


def near_matches(question: str, utterances: list[str], threshold: float = NEAR) -> list[tuple[float, str]]:
    """The normalised ``utterances`` whose ratio to the normalised ``question`` is at least ``threshold``.

    ``ratio()`` can differ slightly with the order of its two strings; the larger of the two counts.
    """
    asked = normalise(question)
    by_question = difflib.SequenceMatcher(None, b=asked)  # b is analysed once, a changes per utterance
    found = []
    for utterance in utterances:
        by_question.set_seq1(utterance)
        # the two quick ratios are upper bounds of ratio() (either order): cheap filters, same answer
        if by_question.real_quick_ratio() < threshold or by_question.quick_ratio() < threshold:
            continue
        ratio = max(by_question.ratio(), difflib.SequenceMatcher(None, asked, utterance).ratio())
        if ratio >= threshold:
            found.append((round(ratio, 3), utterance))
    return found


@pytest.fixture(scope="module")
def banking77_test() -> list[str]:
    from benchmarks.datasets import DatasetMissingError, banking77

    try:
        split = banking77()["test"]
    except DatasetMissingError as error:
        pytest.skip(f"BANKING77 is not here, so the knowledge base cannot be checked against it: {error}")
    return sorted({normalise(text) for text in split.texts})


def test_normalise_and_near_matches() -> None:
    assert normalise("  Where's my   CARD?!") == "wheres my card"
    utterances = [normalise(t) for t in ("Where is my card?", "How do I top up?", "Where is my new card")]
    assert near_matches("where is my card", utterances) == [(1.0, "where is my card")]
    assert [u for _, u in near_matches("Where's my new card?", utterances)] == ["where is my new card"]
    assert near_matches("My card never came in the post", utterances) == []


def test_no_kb_question_equals_or_nearly_equals_a_banking77_test_utterance(banking77_test: list[str]) -> None:
    documents = load_knowledge_base(APP_DIR / "knowledge")
    questions = [(doc.doc_id, q) for doc in documents for q in doc.questions]
    assert len(questions) >= 200  # the check ran over the shipped questions, not an empty list
    offending = {f"{doc_id}: {question!r}": near_matches(question, banking77_test) for doc_id, question in questions}
    offending = {where: found for where, found in offending.items() if found}
    assert not offending, (
        f"{len(offending)} knowledge-base example question(s) equal or nearly equal (ratio >= {NEAR}) a BANKING77 "
        "test utterance; rewrite each in a customer's own words, clearly differently:\n"
        + "\n".join(f"  {where} ~ {found}" for where, found in offending.items()))


def test_every_answer_document_keeps_example_questions() -> None:
    answers = [doc for doc in load_knowledge_base(APP_DIR / "knowledge") if doc.intent]
    assert all(len(doc.questions) >= 3 for doc in answers), [doc.doc_id for doc in answers if len(doc.questions) < 3]
