"""What customers asked in a period: decision shares, hand-off reasons, and the unanswered questions by meaning.

``python -m apps.customer_service report [--since ISO | --days N] [--json]`` reads the event log
(``events.py``) and prints:

* the share of each decision (answer, clarify, decline, hand-off, unavailable) among all of them;
* the hand-offs by reason;
* the most frequent **unanswered** questions, grouped by meaning: the masked texts of messages the
  bot clarified, declined or handed off for lack of an answer (a customer asking for a person says
  "talk to a person", which is no question for the knowledge base), embedded with the bot's
  embedder (``CS_EMBEDDER``) and clustered by average-linkage agglomerative clustering on cosine
  distance: two groups merge while their texts are on average at least ``similarity`` alike.
  Each group shows its size (messages, repeats counted) and a representative question (the one
  most similar to the rest of its group, weighted by how often each was asked).

That list is what a knowledge-base editor needs: the topics to write answers or example questions
for. The pure part (:func:`build_report`) takes the decisions and an ``encode`` function, so tests
pass a small real embedder and a constructed log.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

import numpy as np

from apps.customer_service.events import DECISIONS, HANDOFF_REASONS, Decision, iso

EncodeFn = Callable[[Sequence[str]], np.ndarray]  # texts -> (n, dim) embeddings
UNANSWERED = ("clarify", "decline", "handoff")
NOT_A_QUESTION = {"customer_asked"}  # hand-off reasons whose text is a request for a person, not a question
MAX_TEXTS = 5000  # distinct texts clustered (the most frequent): average linkage needs n^2 memory


class ReportError(ValueError):
    """A report setting out of range."""


@dataclass(frozen=True)
class QuestionGroup:
    size: int                    # messages in the group, repeats counted
    question: str                # the representative (masked) question
    examples: tuple[str, ...]    # up to 3 other distinct texts of the group, most frequent first


def unanswered_texts(decisions: Sequence[Decision]) -> list[str]:
    """The masked texts the bot did not answer (clarified, declined, handed off for lack of an answer)."""
    return [d.text.strip() for d in decisions if d.decision in UNANSWERED and d.reason not in NOT_A_QUESTION
            and d.text.strip()]


def group_questions(texts: Sequence[str], encode: EncodeFn, similarity: float = 0.4,
                    max_texts: int = MAX_TEXTS) -> list[QuestionGroup]:
    """Texts grouped by meaning, biggest group first (ties: by representative question)."""
    if not 0.0 < similarity <= 1.0:
        raise ReportError(f"similarity={similarity} is out of range; expected a cosine similarity in (0, 1], "
                          "e.g. 0.4 (higher: tighter groups)")
    counts = Counter(texts)
    if not counts:
        return []
    unique = [text for text, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:max_texts]]
    weights = np.array([counts[text] for text in unique], dtype=np.float32)  # (n,)
    vectors = np.asarray(encode(unique), dtype=np.float32)  # (n, dim)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    if len(unique) == 1:
        labels = np.zeros(1, dtype=int)
    else:
        from sklearn.cluster import AgglomerativeClustering

        labels = AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="average",
                                         distance_threshold=1.0 - similarity).fit_predict(vectors)
    groups = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)  # in frequency order
        alike = vectors[members] @ vectors[members].T  # (m, m) cosine
        centrality = alike @ weights[members]  # (m,): weighted similarity to the group, itself included
        best = members[int(np.argmax(centrality))]
        others = tuple(unique[i] for i in members if i != best)[:3]
        groups.append(QuestionGroup(int(weights[members].sum()), unique[best], others))
    return sorted(groups, key=lambda group: (-group.size, group.question))


def build_report(decisions: Sequence[Decision], encode: EncodeFn | None, since: datetime | None,
                 until: datetime, top: int = 10, similarity: float = 0.4) -> dict:
    """The report as a JSON-ready dict; ``encode`` is needed only when there are unanswered questions."""
    if top < 1:
        raise ReportError(f"top={top} is out of range; expected an integer >= 1 (groups to show)")
    counts = Counter(d.decision for d in decisions)
    total = sum(counts.values())
    reasons = Counter(d.reason or "other" for d in decisions if d.decision == "handoff")
    texts = unanswered_texts(decisions)
    groups = group_questions(texts, encode, similarity) if texts else []
    return {
        "since": iso(since) if since else None, "until": iso(until), "decisions": total,
        "counts": {decision: counts.get(decision, 0) for decision in DECISIONS},
        "shares": {decision: round(counts.get(decision, 0) / total, 4) if total else 0.0 for decision in DECISIONS},
        "handoff_reasons": [{"reason": reason, "meaning": HANDOFF_REASONS.get(reason, reason), "count": count}
                            for reason, count in sorted(reasons.items(), key=lambda item: (-item[1], item[0]))],
        "unanswered": len(texts), "similarity": similarity, "groups": len(groups),
        "top_unanswered": [asdict(group) | {"examples": list(group.examples)} for group in groups[:top]],
    }


def format_report(report: dict) -> str:
    """The report for people: shares, hand-off reasons, the top groups of unanswered questions."""
    since = report["since"] or "the first record"
    lines = [f"Bot decisions from {since} to {report['until']}: {report['decisions']}"]
    if not report["decisions"]:
        return lines[0] + " (nothing recorded in this period)"
    for decision in DECISIONS:
        lines.append(f"  {decision:<12}{report['counts'][decision]:>7}  {report['shares'][decision]:6.1%}")
    lines.append("Hand-off reasons:" if report["handoff_reasons"] else "Hand-off reasons: none")
    for row in report["handoff_reasons"]:
        lines.append(f"  {row['count']:>7}  {row['reason']} ({row['meaning']})")
    lines.append(f"Unanswered questions: {report['unanswered']} in {report['groups']} group(s) by meaning "
                 f"(similarity >= {report['similarity']}); the most frequent:")
    for rank, group in enumerate(report["top_unanswered"], start=1):
        lines.append(f"  {rank:>2}. {group['size']:>5} x  {group['question']}")
        for example in group["examples"]:
            lines.append(f"               also: {example}")
    return "\n".join(lines)
