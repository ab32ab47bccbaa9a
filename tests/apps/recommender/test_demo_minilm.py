"""End to end with the real base embedder (all-MiniLM-L6-v2) on the shipped demo catalog."""

import os
from pathlib import Path

import pytest

from apps.recommender.catalog import read_interactions
from apps.recommender.config import RecommenderConfig
from apps.recommender.recommender import Recommender

from .conftest import DEMO

pytestmark = pytest.mark.slow


def test_demo_catalog_with_minilm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TEXTML_MODEL_DIR", str(tmp_path / "registry"))  # empty registry: the base model
    config = RecommenderConfig(store_dir=tmp_path / "store")
    rec = Recommender.load(config)
    assert "MiniLM" in rec.encoder.source or "minilm" in rec.encoder.source.lower()
    rec.load_file(DEMO / "items.jsonl")
    # cold start: a new user with a query, before any interaction exists
    top = [item.id for item in rec.recommend([], "bread baking", k=2).items]
    assert set(top) == {"book-006", "kit-008"}
    rec.add_interactions(read_interactions(DEMO / "interactions.csv"))
    ranker = rec.fit_ranker()  # 36 targets: learned or fixed weights, whichever ranks held-out users better
    scores = ranker.info["validation_ndcg10"]
    assert scores[ranker.info["chosen"]] == max(scores.values())
    runner = [item.id for item in rec.recommend(["run-002", "fit-004"], k=5).items]
    assert {"fit-005", "ele-001", "book-004"} & set(runner)
    rec.close()
    again = Recommender.load(config)
    assert again.health()["ranker"] == ranker.source and again.health()["items"] == 50
    assert os.path.isdir(config.index_path)
