"""One sentence per recommendation saying why: the history item it is closest to, or the query words it matched."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_WORD = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset("a an and are as at be by for from has have i in is it its me my of on or our so that the "
                      "this to was with you your want need looking some something".split())


def words(text: str) -> set[str]:
    """Lower-case content words (no stop words, at least 2 characters)."""
    return {w for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in STOPWORDS}


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") else word


def matched_words(query: str, text: str) -> list[str]:
    """Query words found in ``text`` (plural-insensitive), in query order."""
    present = {_stem(w) for w in words(text)}
    return [w for w in dict.fromkeys(_WORD.findall(query.lower())) if w in words(query) and _stem(w) in present]


@dataclass
class Explanation:
    """Why an item was recommended; ``text`` is the sentence shown to people."""

    text: str
    history_item: str | None = None
    query_words: list[str] = field(default_factory=list)


def explain(*, history_id: str | None, history_title: str | None, history_similarity: float,
            co_consumed: bool, query: str | None, query_similarity: float, item_text: str,
            popular: bool = False) -> Explanation:
    """Pick the strongest reason: a query match when the query outweighs the history, else the history item."""
    found = matched_words(query, item_text) if query else []
    reasons = []
    if query and (not history_id or query_similarity >= history_similarity):
        reasons.append(f"matches your search for {', '.join(repr(w) for w in found)}" if found
                       else f"close in meaning to your search {query!r}")
        if history_id:
            reasons.append(f"and to {history_title!r} in your history")
    elif history_id:
        verb = "often chosen together with" if co_consumed else "similar to"
        reasons.append(f"{verb} {history_title!r} from your history")
        if found:
            reasons.append(f"and matches {', '.join(repr(w) for w in found)}")
    if popular and not reasons:
        reasons.append("popular with other users")
    text = " ".join(reasons) or "a close match in the catalog"
    return Explanation(text[0].upper() + text[1:], history_id, found)
