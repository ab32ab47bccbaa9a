"""The bank's knowledge base: Markdown documents with a YAML front matter, parsed with line-exact errors.

A document looks like::

    ---
    intent: card_arrival            # answer documents: the BANKING77 intent they answer
    title: When your card will arrive
    questions:                      # optional: how customers ask for it (NLU examples, extra index keys)
      - My card still hasn't arrived
    ---

    Cards are posted within two working days ...

General pages (fees, cards, transfers, security) carry ``topic:`` instead of ``intent:``. Every
problem is a :class:`KnowledgeBaseError` naming the file and the line, so an ingestion stops
before it touches the live index.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

FRONT_MATTER = "---"
ALLOWED_KEYS = {"intent", "title", "questions", "topic"}
MAX_TITLE = 120
INTENT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_?]*$")


class KnowledgeBaseError(ValueError):
    """A knowledge-base file that cannot be used; ``path`` and ``line`` (1-based) say where."""

    def __init__(self, path: Path, line: int, problem: str) -> None:
        self.path, self.line, self.problem = Path(path), line, problem
        super().__init__(f"{path}:{line}: {problem}")


@dataclass(frozen=True)
class KbDocument:
    """One parsed document. ``doc_id`` is its path relative to the knowledge-base folder."""

    doc_id: str
    title: str
    body: str
    intent: str | None = None
    topic: str | None = None
    questions: tuple[str, ...] = ()
    path: str = ""
    body_line: int = 1  # line of the body's first character in the file, for chunk citations


def parse_document(path: Path, root: Path | None = None) -> KbDocument:
    """Parse one Markdown file; raises KnowledgeBaseError with the file and line of the first problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        line = path.read_bytes()[: error.start].count(b"\n") + 1
        raise KnowledgeBaseError(path, line, f"is not UTF-8 text ({error.reason}); save the file as UTF-8") from None
    lines = text.splitlines()
    if not lines or lines[0].strip() != FRONT_MATTER:
        raise KnowledgeBaseError(path, 1, f"expected the front matter to open with {FRONT_MATTER!r} on the first "
                                          "line, followed by `title:` and `intent:` or `topic:`")
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == FRONT_MATTER)
    except StopIteration:
        raise KnowledgeBaseError(path, len(lines), f"the front matter opened on line 1 is never closed; add a "
                                                   f"{FRONT_MATTER!r} line after it") from None
    meta = _front_matter(path, "\n".join(lines[1:end]))
    body_lines = lines[end + 1:]
    skipped = next((i for i, line in enumerate(body_lines) if line.strip()), len(body_lines))
    body = "\n".join(body_lines).strip()
    if not body:
        raise KnowledgeBaseError(path, end + 2, "the document has no text after its front matter; write the answer")

    def where(key: str) -> int:
        return _key_line(lines[1:end], key)

    title = meta.get("title")
    if not isinstance(title, str) or not title.strip():
        raise KnowledgeBaseError(path, where("title"), f"`title` is {title!r}; expected a non-empty text")
    if len(title) > MAX_TITLE:
        raise KnowledgeBaseError(path, where("title"), f"`title` has {len(title)} characters; keep it under "
                                                       f"{MAX_TITLE}")
    intent, topic = meta.get("intent"), meta.get("topic")
    if (intent is None) == (topic is None):
        raise KnowledgeBaseError(path, 2, "a document needs exactly one of `intent:` (an answer document) or "
                                          "`topic:` (a general page)")
    if intent is not None and (not isinstance(intent, str) or not INTENT_NAME.match(intent)):
        raise KnowledgeBaseError(path, where("intent"), f"`intent` is {intent!r}; expected an intent name such as "
                                                        "card_arrival (letters, digits, _ and ?)")
    if topic is not None and (not isinstance(topic, str) or not topic.strip()):
        raise KnowledgeBaseError(path, where("topic"), f"`topic` is {topic!r}; expected a non-empty text")
    questions = meta.get("questions", [])
    if not isinstance(questions, list) or not all(isinstance(q, str) and q.strip() for q in questions):
        raise KnowledgeBaseError(path, where("questions"), f"`questions` is {questions!r}; expected a list of "
                                                           "non-empty texts")
    doc_id = path.relative_to(root).as_posix() if root else path.name
    return KbDocument(doc_id=doc_id, title=title.strip(), body=body, intent=intent, topic=topic,
                      questions=tuple(q.strip() for q in questions), path=str(path), body_line=end + 2 + skipped)


def _front_matter(path: Path, text: str) -> dict:
    try:
        meta = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 2  # +1 for 1-based, +1 for the opening ---
        problem = getattr(error, "problem", None) or str(error)
        raise KnowledgeBaseError(path, line, f"invalid YAML in the front matter: {problem}") from None
    if not isinstance(meta, dict):
        raise KnowledgeBaseError(path, 2, f"the front matter is a {type(meta).__name__}; expected `key: value` lines")
    unknown = sorted(set(map(str, meta)) - ALLOWED_KEYS)
    if unknown:
        lines = text.splitlines()
        raise KnowledgeBaseError(path, _key_line(lines, unknown[0]), f"unknown front-matter key(s) {unknown}; "
                                                                         f"allowed: {sorted(ALLOWED_KEYS)}")
    return meta


def _key_line(front_lines: list[str], key: str) -> int:
    """1-based line (counting the opening ``---`` as line 1) where ``key:`` is set, else 1."""
    for i, line in enumerate(front_lines, start=2):
        if line.startswith(f"{key}:"):
            return i
    return 1


def load_knowledge_base(folder: Path) -> list[KbDocument]:
    """Every ``*.md`` under ``folder`` (sorted), parsed; also rejects duplicate intents' titles and empty folders."""
    folder = Path(folder)
    if not folder.is_dir():
        raise KnowledgeBaseError(folder, 0, "is not a folder; pass the knowledge-base folder of Markdown files")
    files = sorted(folder.rglob("*.md"))
    if not files:
        raise KnowledgeBaseError(folder, 0, "holds no *.md documents; add answer documents and general pages")
    documents = [parse_document(path, folder) for path in files]
    seen: dict[str, str] = {}
    for doc in documents:
        key = doc.title.casefold()
        if key in seen:
            raise KnowledgeBaseError(Path(doc.path), 2, f"title {doc.title!r} is also used by {seen[key]}; titles are "
                                                        "cited to customers and must be unique")
        seen[key] = doc.doc_id
    return documents


def intents_covered(documents: list[KbDocument]) -> set[str]:
    """The intents that have at least one answer document."""
    return {doc.intent for doc in documents if doc.intent}
