"""Hard-negative mining with a tiny hand-made encoder: the guards against false negatives hold."""

from __future__ import annotations

import numpy as np

from core.data.pairs import make_pairs, pairs_from_labelled
from core.finetune.negatives import MiningConfig, fill_negatives, mine_negatives

# 2-d unit vectors by angle: texts at nearby angles are similar
ANGLES = {"q": 0, "pos": 10, "dup": 9, "near": 30, "mid": 60, "far": 120, "q2": 170, "pos2": 175}


def encode(texts: list[str]) -> np.ndarray:
    radians = np.deg2rad([ANGLES[t] for t in texts])
    return np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)


def test_hardest_first_and_positives_excluded() -> None:
    pairs = make_pairs(["q", "q2"], ["pos", "pos2"])
    negatives = mine_negatives(encode, pairs, 2, MiningConfig(max_score=1.0), extra_corpus=["near", "mid", "far"])
    assert negatives[0] == ["near", "mid"]
    assert "pos2" not in negatives[1] and "q2" not in negatives[1]


def test_margin_and_max_score_drop_likely_false_negatives() -> None:
    pairs = make_pairs(["q", "q2"], ["pos", "pos2"])
    # "dup" scores like the positive (cos 9 deg vs 10 deg): within the 5% margin, so never a negative
    mined = mine_negatives(encode, pairs, 3, MiningConfig(relative_margin=0.05, max_score=1.0),
                           extra_corpus=["dup", "near", "mid"])
    assert "dup" not in mined[0] and mined[0][0] == "near"
    # a max_score below cos(30 deg) = 0.87 skips "near" as well
    mined = mine_negatives(encode, pairs, 1, MiningConfig(max_score=0.8), extra_corpus=["dup", "near", "mid"])
    assert mined[0] == ["mid"]


def test_range_min_skips_the_top() -> None:
    pairs = make_pairs(["q", "q2"], ["pos", "pos2"])
    mined = mine_negatives(encode, pairs, 1, MiningConfig(range_min=1, max_score=1.0), extra_corpus=["near", "mid"])
    assert mined[0] == ["mid"]


def test_same_label_texts_are_never_negatives() -> None:
    texts = ["q", "pos", "near", "mid", "far", "q2"]
    labels = ["a", "a", "a", "b", "b", "b"]
    pairs = pairs_from_labelled(texts, labels, seed=1)
    mined = mine_negatives(encode, pairs, 5, MiningConfig(max_score=1.0, relative_margin=0.0))
    for query, negatives in zip(pairs.queries, mined, strict=True):
        own = labels[texts.index(query)]
        assert all(labels[texts.index(n)] != own for n in negatives)


def test_fill_pads_with_non_positives_deterministically() -> None:
    pairs = pairs_from_labelled(["q", "pos", "near", "mid", "far", "q2"], ["a", "a", "a", "b", "b", "b"], seed=1)
    filled = fill_negatives(pairs, [[] for _ in pairs.queries], minimum=2, seed=7)
    assert filled == fill_negatives(pairs, [[] for _ in pairs.queries], minimum=2, seed=7)
    known = pairs.known_positives()
    for query, row in zip(pairs.queries, filled, strict=True):
        assert len(row) <= 2 and not set(row) & (known[query] | {query})
