"""Hard negatives for (query, positive) pairs: mined with a bi-encoder, or drawn at random.

A hard negative is a text the current model ranks high for a query although it is not a
positive. Training against them teaches finer distinctions than random in-batch negatives,
but the top of a ranking is also where *unlabelled positives* sit: a duplicate answer, a
paraphrase, another text of the same label. Mining them as negatives teaches the model to
push apart things that belong together. Four guards keep them out (after NV-Retriever,
Moreira et al. 2024, whose best setting is a 5% relative margin):

* every known positive of the query (:meth:`TextPairs.known_positives`: its other
  positives and, for labelled data, every text of its label) and the query itself;
* ``relative_margin``: a candidate must score at most ``(1 - margin)`` times the positive
  (for positive scores), so near-ties with the positive are not used;
* ``max_score``: near-duplicates of the query are skipped whatever the positive scores;
* ``range_min``/``range_max``: skip the very top ranks (for noisy data), and look no further
  than ``range_max`` candidates (beyond it negatives are no longer hard).

This is the rule of ``sentence_transformers.util.mine_hard_negatives``, written against
arrays because that function needs the ``datasets`` package (not a dependency here) and
only knows positives by exact (query, positive) rows, not by label.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from core.data.pairs import TextPairs

log = logging.getLogger(__name__)

# texts -> (n, dim) float32, L2-normalised, so a dot product is the cosine similarity
EncodeFn = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class MiningConfig:
    """Where in a query's ranking negatives may come from (see the module doc)."""

    range_min: int = 0
    range_max: int = 50
    relative_margin: float = 0.05
    max_score: float = 0.95
    query_chunk: int = 1024  # queries scored at once: bounds memory to chunk x corpus floats

    def problems(self) -> list[str]:
        checks = {"range_min": self.range_min >= 0, "range_max": self.range_max > self.range_min,
                  "relative_margin": 0 <= self.relative_margin < 1, "max_score": -1 <= self.max_score <= 1,
                  "query_chunk": self.query_chunk >= 1}
        return [f"mining.{name}={getattr(self, name)!r}" for name, ok in checks.items() if not ok]


def mine_negatives(encode: EncodeFn, pairs: TextPairs, num_negatives: int, config: MiningConfig = MiningConfig(),
                   extra_corpus: list[str] | None = None) -> list[list[str]]:
    """Per pair, up to ``num_negatives`` hard negatives, hardest first (``len(result) == len(pairs)``).

    Candidates are the distinct positives of ``pairs`` plus ``extra_corpus`` (e.g. given
    negatives or a document collection). Pairs for which fewer candidates pass the guards
    get fewer negatives; the count is logged.
    """
    if num_negatives < 1:
        raise ValueError(f"num_negatives is {num_negatives}; mine at least 1 negative per pair (or do not mine)")
    corpus = list(dict.fromkeys(pairs.corpus() + list(extra_corpus or [])))
    corpus_index = {text: i for i, text in enumerate(corpus)}
    queries = list(dict.fromkeys(pairs.queries))
    query_index = {text: i for i, text in enumerate(queries)}
    known = pairs.known_positives()
    query_vectors = encode(queries)  # (queries, dim)
    corpus_vectors = encode(corpus)  # (corpus, dim)

    window = min(config.range_max + max(len(texts) for texts in known.values()) + 1, len(corpus))
    ranked: list[list[tuple[str, float]]] = []  # per distinct query: allowed candidates, best first
    for start in range(0, len(queries), config.query_chunk):
        scores = query_vectors[start:start + config.query_chunk] @ corpus_vectors.T  # (chunk, corpus)
        if window < len(corpus):
            top = np.argpartition(-scores, window - 1, axis=1)[:, :window]  # (chunk, window), unordered
        else:
            top = np.tile(np.arange(len(corpus)), (len(scores), 1))
        for row, candidates in enumerate(top):
            query = queries[start + row]
            candidates = candidates[np.argsort(-scores[row, candidates], kind="stable")]
            excluded = known[query] | {query}
            allowed = [(corpus[c], float(scores[row, c])) for c in candidates if corpus[c] not in excluded]
            ranked.append(allowed[config.range_min:config.range_max])

    negatives: list[list[str]] = []
    short = 0
    for i, query in enumerate(pairs.queries):
        q = query_index[query]
        positive = float(query_vectors[q] @ corpus_vectors[corpus_index[pairs.positives[i]]])
        ceiling = min(positive - abs(positive) * config.relative_margin, config.max_score)
        chosen = [text for text, score in ranked[q] if score <= ceiling][:num_negatives]
        short += len(chosen) < num_negatives
        negatives.append(chosen)
    log.info("mined %d hard negatives for %d pairs (%d pairs got fewer than %d)",
             sum(map(len, negatives)), len(pairs), short, num_negatives)
    return negatives


def fill_negatives(pairs: TextPairs, negatives: list[list[str]], minimum: int, seed: int) -> list[list[str]]:
    """Pad each pair's negatives up to ``minimum`` with random corpus texts that are not its positives.

    Used where every pair needs the same shape (a triplet per row, N candidates per dev
    query). A pair whose corpus has too few non-positive texts gets what there is.
    """
    rng = random.Random(seed)
    corpus = pairs.corpus()
    known = pairs.known_positives()
    filled = []
    for query, have in zip(pairs.queries, negatives, strict=True):
        need = minimum - len(have)
        if need <= 0:
            filled.append(list(have))
            continue
        excluded = set(known[query]) | {query} | set(have)
        picked: list[str] = []
        for _ in range(20 * need):  # rejection sampling: cheap when most of the corpus is allowed
            text = corpus[rng.randrange(len(corpus))]
            if text not in excluded:
                picked.append(text)
                excluded.add(text)
                if len(picked) == need:
                    break
        if len(picked) < need:
            pool = [text for text in corpus if text not in excluded]
            picked += rng.sample(pool, min(need - len(picked), len(pool)))
        filled.append(list(have) + picked)
    return filled
