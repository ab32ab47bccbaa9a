"""Bi-encoder fine-tuning on 48 labelled support messages with the packaged MiniLM (one epoch, CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.artifacts import check_artifact, data_record, write_artifact
from core.data.pairs import TextPairs, load_pairs, pairs_from_labelled
from core.finetune.embedder import EmbedderTrainingConfig, train_embedder
from core.finetune.trained import TrainedModel, TrainingConfigError
from core.inference.embedder import Embedder, EmbedderLoadError
from tests.core.retrieval_data import labelled_split

CONFIG = EmbedderTrainingConfig(epochs=1, batch_size=16, learning_rate=1e-4, max_seq_length=32,
                                mined_negatives=1, device="cpu", progress=False)


@pytest.fixture(scope="module")
def train_pairs() -> TextPairs:
    return pairs_from_labelled(*labelled_split("train"), max_pairs_per_label=10, seed=13, source="train")


@pytest.fixture(scope="module")
def dev_pairs() -> TextPairs:
    return pairs_from_labelled(*labelled_split("dev"), seed=13, source="dev")


@pytest.fixture(scope="module")
def base(offline: None) -> Embedder:
    return Embedder.load("all-MiniLM-L6-v2", device="cpu", max_seq_length=32)


@pytest.fixture(scope="module")
def trained(offline: None, train_pairs: TextPairs, dev_pairs: TextPairs) -> TrainedModel:
    return train_embedder(CONFIG, train_pairs, dev_pairs)


def mnrl_loss(model, pairs: TextPairs) -> float:
    """The training objective in eval mode on fixed batches of one pair per label (as in training)."""
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(pairs.labels):
        by_label.setdefault(label, []).append(i)
    batches = list(zip(*by_label.values(), strict=False))  # each batch: one pair of every label
    loss = MultipleNegativesRankingLoss(model, scale=CONFIG.scale)
    model.eval()
    with torch.no_grad():
        values = [float(loss([model.preprocess([pairs.queries[i] for i in batch]),
                              model.preprocess([pairs.positives[i] for i in batch])], None)) for batch in batches]
    return float(np.mean(values))


def positive_similarity(embedder: Embedder, pairs: TextPairs) -> tuple[float, float]:
    """Mean cosine of (query, its positive) and of (query, texts of other labels)."""
    queries, positives = embedder.encode(pairs.queries), embedder.encode(pairs.positives)
    similarity = queries @ positives.T  # (pairs, pairs)
    same = np.array([[a == b for b in pairs.labels] for a in pairs.labels])
    return float(np.diag(similarity).mean()), float(similarity[~same].mean())


@pytest.mark.slow
def test_training_lowers_the_loss_and_logs_each_step(trained: TrainedModel, base: Embedder,
                                                     train_pairs: TextPairs) -> None:
    steps = trained.history[0]["steps"]
    assert len(trained.step_losses) == steps > 0 and all(np.isfinite(trained.step_losses))
    assert mnrl_loss(trained.model, train_pairs) < mnrl_loss(base.model, train_pairs)


@pytest.mark.slow
def test_dev_metrics_are_computed_and_in_range(trained: TrainedModel) -> None:
    for split in ("dev", "dev_base"):
        metrics = trained.metrics[split]
        assert {"recall@1", "recall@5", "mrr@10"} <= set(metrics)
        assert all(0.0 <= metrics[k] <= 1.0 for k in ("recall@1", "recall@5", "mrr@10"))
        assert metrics["recall@1"] <= metrics["recall@5"]
    assert trained.metrics["dev"]["queries"] > 10 and trained.best_epoch == 1
    assert trained.history[0]["dev_mrr@10"] == trained.metrics["dev"]["mrr@10"]


@pytest.mark.slow
def test_positives_end_up_closer_than_before(trained: TrainedModel, base: Embedder, train_pairs: TextPairs) -> None:
    tuned = Embedder(trained.model, base.device_info)
    base_positive, base_other = positive_similarity(base, train_pairs)
    tuned_positive, tuned_other = positive_similarity(tuned, train_pairs)
    assert tuned_positive - tuned_other > base_positive - base_other  # the gap between topics widened


@pytest.mark.slow
def test_artifact_reloads_with_the_same_embeddings(trained: TrainedModel, tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text('{"text": "a", "label": "x"}\n', encoding="utf-8")
    card = trained.card("support-embedder", data=[data_record(data, "train")])
    target = tmp_path / "support-embedder" / "1"
    write_artifact(target, trained.save, card)
    assert (target / "model.safetensors").exists() and (target / "tokenizer.json").exists()
    assert check_artifact(target).primary_metric == "mrr@10"
    loaded = Embedder.load(target, device="cpu")
    texts = ["My card was declined", "Where is my parcel?", "Reset my password"]
    expected = trained.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    vectors = loaded.encode(texts)
    assert vectors.dtype == np.float32 and vectors.shape == (3, loaded.dim) and loaded.dim == 384
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(vectors, expected, atol=1e-5)
    assert loaded.encode([]).shape == (0, 384)


def test_loading_a_folder_that_is_not_a_model_names_it(tmp_path: Path, offline: None) -> None:
    (tmp_path / "notes.txt").write_text("not a model", encoding="utf-8")
    with pytest.raises(EmbedderLoadError, match=f"{tmp_path} is not a model folder"):
        Embedder.load(tmp_path)
    with pytest.raises(EmbedderLoadError, match="no-such-model-folder"):
        Embedder.load("./no-such-model-folder")


def test_bad_options_fail_before_any_model_loads() -> None:
    with pytest.raises(TrainingConfigError, match=r"epochs=0.*learning_rate=-1"):
        EmbedderTrainingConfig(epochs=0, learning_rate=-1).validate()


def test_a_pair_file_trains_too(tmp_path: Path, offline: None) -> None:
    """Explicit (query, positive, negative) rows: given negatives become triplets."""
    path = tmp_path / "faq.csv"
    path.write_text("query,positive,negative\n"
                    "my card was declined,Why card payments fail,How refunds work\n"
                    "where is my parcel,Tracking your delivery,\n"
                    "forgot my password,Resetting your password,Tracking your delivery\n"
                    "I want my money back,How refunds work,\n", encoding="utf-8")
    pairs = load_pairs(path)
    config = EmbedderTrainingConfig(epochs=1, batch_size=4, max_seq_length=16, device="cpu", progress=False)
    result = train_embedder(config, pairs, pairs)
    assert len(result.step_losses) >= 1 and 0.0 <= result.metrics["dev"]["mrr@10"] <= 1.0
