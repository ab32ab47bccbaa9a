"""The desk's most frequent unanswered questions, grouped by meaning, computed in the background and cached.

Grouping embeds every distinct unanswered text (``report.group_questions``): seconds for a few
thousand texts on a CPU, too slow for each request of a page that polls. So each period keeps its
last result; a request gets it at once and, when it is out of date (the unanswered texts changed
and ``min_interval`` has passed, or it is older than ``max_age``), starts one recomputation in
the background. The page shows "grouping..." until a first result exists.

Vectors are cached per text (up to ``max_vectors``), so a recomputation embeds only new texts.
Embedding runs on the event loop's thread in small batches, not in a worker thread: the actions
call the same embedder on that thread, and a Hugging Face fast tokenizer used from two threads at
once can fail ("Already borrowed"). A batch holds the loop for tens of milliseconds. The clustering
itself (scikit-learn, no tokenizer) runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from apps.customer_service.report import MAX_TEXTS, group_questions

log = logging.getLogger(__name__)
EncodeFn = Callable[[Sequence[str]], np.ndarray]  # texts -> (n, dim)


@dataclass(frozen=True)
class Grouped:
    groups: list[dict]       # [{"size", "question", "examples"}], biggest first, at most ``top``
    texts: int               # unanswered messages grouped
    fingerprint: tuple       # what they were computed from (see ``fingerprint``)
    computed_at: float       # time.monotonic()
    seconds: float           # how long the computation took


def fingerprint(texts: Sequence[str]) -> tuple:
    """Cheap identity of a list of texts (count and a hash): a change means the groups may have changed."""
    return len(texts), hash(tuple(texts))


class UnansweredGroups:
    """Cached groups per period key (e.g. ``"24h"``); ``encode`` is the bot's embedder."""

    def __init__(self, encode: EncodeFn, similarity: float = 0.4, top: int = 10, min_interval: float = 5.0,
                 max_age: float = 300.0, batch_size: int = 32, max_vectors: int = 20_000) -> None:
        self.encode = encode
        self.similarity = similarity
        self.top = top
        self.min_interval = min_interval
        self.max_age = max_age
        self.batch_size = batch_size
        self.max_vectors = max_vectors
        self._results: dict[str, Grouped] = {}
        self._running: dict[str, asyncio.Task] = {}
        self._vectors: dict[str, np.ndarray] = {}

    def lookup(self, key: str, texts: Sequence[str]) -> dict:
        """What the page shows for ``key`` now; starts a background recomputation when it is out of date.

        Must be called on the event loop. Returns ``{"status": "ready"|"updating"|"grouping", "groups",
        "texts", "age_s", "seconds"}``.
        """
        result, now = self._results.get(key), time.monotonic()
        stale = result is None or (now - result.computed_at > self.max_age) or (
            result.fingerprint != fingerprint(texts) and now - result.computed_at >= self.min_interval)
        if stale and key not in self._running:
            task = asyncio.get_running_loop().create_task(self.compute(key, list(texts)))
            self._running[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        if result is None:
            return {"status": "grouping", "groups": [], "texts": len(texts), "age_s": None, "seconds": None}
        return {"status": "updating" if key in self._running else "ready", "groups": result.groups,
                "texts": result.texts, "age_s": round(now - result.computed_at, 1), "seconds": round(result.seconds, 2)}

    def _finished(self, key: str, task: asyncio.Task) -> None:
        self._running.pop(key, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("grouping the unanswered questions failed: %s", task.exception())

    async def compute(self, key: str, texts: list[str]) -> Grouped:
        """Group ``texts`` (embedding the new ones on this loop, clustering in a thread) and keep the result."""
        started = time.monotonic()
        counts = Counter(texts)
        frequent = [text for text, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:MAX_TEXTS]]
        missing = [text for text in frequent if text not in self._vectors]
        for start in range(0, len(missing), self.batch_size):
            batch = missing[start:start + self.batch_size]
            for text, vector in zip(batch, np.asarray(self.encode(batch), dtype=np.float32), strict=True):
                self._vectors[text] = vector
            await asyncio.sleep(0)  # let the customers' requests in between batches
        groups = await asyncio.to_thread(group_questions, texts, self._cached, self.similarity) if texts else []
        self._trim(set(frequent))
        result = Grouped([asdict(g) | {"examples": list(g.examples)} for g in groups[:self.top]], len(texts),
                         fingerprint(texts), time.monotonic(), time.monotonic() - started)
        self._results[key] = result
        log.info("grouped %d unanswered questions (%d distinct) into %d groups in %.1f s", len(texts), len(counts),
                 len(groups), result.seconds)
        return result

    def _cached(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._vectors[text] for text in texts])  # (n, dim): all embedded by compute()

    def _trim(self, keep: set[str]) -> None:
        """Drop the oldest vectors not just used once there are more than ``max_vectors``."""
        excess = len(self._vectors) - self.max_vectors
        for text in [t for t in self._vectors if t not in keep][:max(excess, 0)]:
            del self._vectors[text]
