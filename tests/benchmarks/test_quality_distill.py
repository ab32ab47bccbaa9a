"""The distillation benchmark's unlabelled text: seeded, without dev/test sentences, and never short."""

from __future__ import annotations

import pytest

from benchmarks import quality_distill


@pytest.fixture()
def tweets(monkeypatch) -> list[str]:
    texts = [f"tweet {i}" for i in range(20)] + ["a dev sentence", "a test sentence"]
    monkeypatch.setitem(quality_distill.UNLABELLED, "tweets", (lambda: texts, "tweets.csv"))
    return texts


def test_unlabelled_text_is_seeded_and_holds_no_held_out_sentence(tweets: list[str]) -> None:
    held_out = ["a dev sentence", " a test sentence "]
    drawn = quality_distill.unlabelled_texts("tweets", 20, held_out, seed=7)
    assert sorted(drawn) == sorted(tweets[:20])
    assert quality_distill.unlabelled_texts("tweets", 5, held_out, seed=7) == \
        quality_distill.unlabelled_texts("tweets", 5, held_out, seed=7)


def test_asking_for_more_rows_than_there_are_is_refused(tweets: list[str]) -> None:
    with pytest.raises(SystemExit, match="--unlabelled-rows 21: tweets has only 20 usable texts"):
        quality_distill.unlabelled_texts("tweets", 21, ["a dev sentence", "a test sentence"], seed=7)
