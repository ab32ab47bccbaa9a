"""Cross-encoder re-ranker training on 48 labelled support messages, from the packaged MiniLM (CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.artifacts import check_artifact, write_artifact
from core.data.pairs import pairs_from_labelled
from core.finetune.reranker import RerankerTrainingConfig, train_reranker
from core.finetune.trained import TrainedModel, TrainingConfigError
from core.inference.reranker import Reranker, RerankerLoadError
from core.model_refs import resolve_model
from tests.core.retrieval_data import TOPICS, labelled_split

# two epochs: the new one-logit head needs about one epoch of this tiny set before the loss moves
CONFIG = RerankerTrainingConfig(epochs=2, batch_size=8, learning_rate=1e-4, max_seq_length=32,
                                negatives_per_query=3, eval_candidates=5, device="cpu", progress=False)


@pytest.fixture(scope="module")
def trained(offline: None) -> TrainedModel:
    train = pairs_from_labelled(*labelled_split("train"), max_pairs_per_label=10, seed=13, source="train")
    dev = pairs_from_labelled(*labelled_split("dev"), seed=13, source="dev")
    return train_reranker(CONFIG, train, dev)


@pytest.fixture(scope="module")
def saved(trained: TrainedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("registry") / "support-reranker" / "1"
    return write_artifact(target, trained.save, trained.card("support-reranker"))


@pytest.mark.slow
def test_training_lowers_the_loss(trained: TrainedModel) -> None:
    first, second = (epoch["train_loss"] for epoch in trained.history)
    assert second < first
    assert len(trained.step_losses) == sum(epoch["steps"] for epoch in trained.history)


@pytest.mark.slow
def test_dev_reranking_metrics_are_in_range_and_improve(trained: TrainedModel) -> None:
    dev, base = trained.metrics["dev"], trained.metrics["dev_base"]
    for metrics in (dev, base):
        assert 0.0 <= metrics["accuracy@1"] <= metrics["mrr@10"] <= 1.0
        assert metrics["candidates"] == CONFIG.eval_candidates and metrics["queries"] == 24
    assert dev["mrr@10"] > base["mrr@10"]  # the base has a random head: about chance (0.46 for 5 candidates)
    assert trained.best_epoch in (1, 2)


@pytest.mark.slow
def test_artifact_reloads_with_the_same_scores(trained: TrainedModel, saved: Path) -> None:
    assert check_artifact(saved, required=("model.safetensors", "config.json")).task == "reranker"
    reranker = Reranker.load(saved, device="cpu")
    query = "my card does not work in the shop"
    passages = [TOPICS["delivery"][9], TOPICS["card"][10], TOPICS["account"][8], TOPICS["refund"][6]]
    expected = trained.model.predict([(query, p) for p in passages], convert_to_numpy=True)
    scores = reranker.score(query, passages)
    assert scores.dtype == np.float32 and scores.shape == (4,)
    assert np.allclose(scores, expected, atol=1e-5)
    ranked = reranker.rerank(query, passages, top_k=2)
    assert len(ranked) == 2 and ranked[0][1] >= ranked[1][1]
    assert ranked[0] == (int(np.argmax(scores)), pytest.approx(float(scores.max())))
    assert [i for i, _ in reranker.rerank(query, passages)] == np.argsort(-scores, kind="stable").tolist()
    assert reranker.score(query, []).shape == (0,)


def test_loading_something_that_is_not_a_reranker_names_it(tmp_path: Path, offline: None) -> None:
    with pytest.raises(RerankerLoadError, match=f"{tmp_path / 'missing'} is missing"):
        Reranker.load(tmp_path / "missing")
    with pytest.raises(RerankerLoadError, match=f"{tmp_path} is not a cross-encoder \\(no config.json\\)"):
        Reranker.load(tmp_path)
    bi_encoder = resolve_model("all-MiniLM-L6-v2").location  # a bi-encoder: no relevance head
    with pytest.raises(RerankerLoadError, match=r"is not a cross-encoder \(architectures \['BertModel'\]\)"):
        Reranker.load(bi_encoder)


def test_bad_options_fail_before_any_model_loads() -> None:
    with pytest.raises(TrainingConfigError, match=r"eval_candidates=1"):
        RerankerTrainingConfig(eval_candidates=1).validate()


def test_rerank_rejects_a_bad_top_k(trained: TrainedModel) -> None:
    from core.device import pick_device

    with pytest.raises(ValueError, match="top_k is 0"):
        Reranker(trained.model, pick_device("cpu")).rerank("q", ["a"], top_k=0)
