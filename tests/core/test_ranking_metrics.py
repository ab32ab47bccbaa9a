"""Ranking metrics against hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest

from core.ranking_metrics import first_relevant_rank, ranking_metrics


def test_perfect_ranking_scores_one() -> None:
    scores = np.eye(3)
    metrics = ranking_metrics(scores, [{0}, {1}, {2}])
    assert metrics == {"recall@1": 1.0, "recall@5": 1.0, "mrr@10": 1.0, "queries": 3}


def test_known_ranks() -> None:
    scores = np.array([[0.9, 0.8, 0.1],    # relevant 1 -> rank 2
                       [0.1, 0.2, 0.3],    # relevant 0 -> rank 3
                       [0.5, 0.4, 0.3]])   # relevant {1, 2} -> best at rank 2
    relevant = [{1}, {0}, {1, 2}]
    assert first_relevant_rank(scores, relevant).tolist() == [2, 3, 2]
    metrics = ranking_metrics(scores, relevant, recall_at=(1, 2), mrr_at=2)
    assert metrics["recall@1"] == 0.0
    assert metrics["recall@2"] == pytest.approx(2 / 3)
    assert metrics["mrr@2"] == pytest.approx((0.5 + 0.0 + 0.5) / 3)  # rank 3 is beyond mrr@2


def test_removed_candidates_and_empty_relevant_sets() -> None:
    scores = np.array([[np.inf * -1, 0.2], [0.3, 0.1]])
    # query 0's only relevant candidate was removed (-inf): it counts as not found
    assert first_relevant_rank(scores, [{0}, {0}]).tolist() == [0, 1]
    metrics = ranking_metrics(scores, [{0}, set()])  # query 1 has nothing relevant: left out
    assert metrics["queries"] == 1 and metrics["mrr@10"] == 0.0


def test_ties_keep_candidate_order() -> None:
    assert first_relevant_rank(np.zeros((1, 4)), [{2}]).tolist() == [3]


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"scores has shape \(2, 3\); expected \(queries, candidates\) with 3"):
        ranking_metrics(np.zeros((2, 3)), [{0}, {1}, {2}])
