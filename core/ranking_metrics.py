"""Ranking metrics shared by the embedder and re-ranker trainers and their evaluations.

One signature for all: ``scores`` is a (queries, candidates) array where higher means more
relevant (``-inf`` removes a candidate from a query's ranking), and ``relevant[i]`` is the
set of candidate indices that are right for query ``i``. Values are in [0, 1]; higher is
better; a perfect ranking scores 1.0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def first_relevant_rank(scores: np.ndarray, relevant: Sequence[set[int]]) -> np.ndarray:
    """Per query, the 1-based rank of its best-ranked relevant candidate (0 when none is ranked).

    Ties keep the candidate order (a stable sort), so callers that put the right answer at
    a fixed index should shuffle candidates first, or an untrained model that scores every
    candidate alike looks perfect.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] != len(relevant):
        raise ValueError(f"scores has shape {scores.shape}; expected (queries, candidates) with "
                         f"{len(relevant)} queries, one per relevant set")
    ranks = np.zeros(len(relevant), dtype=np.int64)
    order = np.argsort(-scores, axis=1, kind="stable")  # (queries, candidates), best first
    for i, wanted in enumerate(relevant):
        if not wanted:
            continue
        ranked = order[i][np.isfinite(scores[i, order[i]])]
        hits = np.flatnonzero(np.isin(ranked, list(wanted)))
        ranks[i] = hits[0] + 1 if hits.size else 0
    return ranks


def ranking_metrics(scores: np.ndarray, relevant: Sequence[set[int]], recall_at: Sequence[int] = (1, 5),
                    mrr_at: int = 10) -> dict[str, float]:
    """``recall@k`` for each k and ``mrr@{mrr_at}``, averaged over queries with a relevant candidate.

    ``recall@k`` is the fraction of queries with a relevant candidate in the top k (the
    hit rate; with one positive per query it is the usual Recall@k). ``mrr@k`` is the mean
    of 1/rank of the first relevant candidate, counting 0 when it is ranked below k.
    Queries whose relevant set is empty are left out; ``queries`` says how many counted.
    """
    ranks = first_relevant_rank(scores, relevant)
    counted = np.array([bool(wanted) for wanted in relevant])
    ranks = ranks[counted]
    if ranks.size == 0:
        raise ValueError("no query has a relevant candidate; ranking metrics are undefined")
    found = ranks > 0
    metrics = {f"recall@{k}": float(np.mean(found & (ranks <= k))) for k in recall_at}
    reciprocal = np.where(found & (ranks <= mrr_at), 1.0 / np.maximum(ranks, 1), 0.0)
    metrics[f"mrr@{mrr_at}"] = float(reciprocal.mean())
    metrics["queries"] = int(ranks.size)
    return metrics
