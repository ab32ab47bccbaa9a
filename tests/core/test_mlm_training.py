"""Continued MLM pre-training (``core.finetune.mlm``) on a few sentences with the packaged MiniLM (CPU, small).

Checked on a real run: the new MLM head is warmed up with the encoder frozen, the dev
masked-token loss falls, the saved encoder loads as a classifier's base model, and the CLI
writes an ``encoder`` artifact whose card holds the before/after metrics.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.artifacts import read_card
from core.classifier_model import PooledClassifier
from core.cli import main as cli_main
from core.finetune.mlm import MlmTrainingConfig, train_mlm
from core.finetune.trained import TrainingConfigError

pytestmark = pytest.mark.slow

TEXTS = [
    "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn in the corresponding period in 2007.",
    "Net sales decreased by 5 percent to EUR 220 mn as demand for paper weakened.",
    "The company expects its net sales for 2009 to remain at the previous year's level.",
    "Shares of the bank fell sharply after it announced a profit warning on Tuesday.",
    "The board will propose a dividend of EUR 0.50 per share for the financial year.",
    "Quarterly revenue beat analyst estimates, sending the stock up 7 percent.",
] * 8
CONFIG = MlmTrainingConfig(epochs=2, batch_size=8, learning_rate=2e-4, head_warmup_ratio=0.25, max_length=32,
                           device="cpu", progress=False)


@pytest.fixture(scope="module")
def adapted(offline):
    return train_mlm(CONFIG, TEXTS, TEXTS[:12])


def test_dev_loss_falls_and_head_was_new(adapted) -> None:
    assert adapted.head_was_new  # the packaged sentence-transformers encoder has no MLM head
    assert adapted.metrics["dev"]["mlm_loss"] < adapted.metrics["dev_base"]["mlm_loss"] - 1.0
    assert adapted.metrics["dev"]["mlm_accuracy"] >= adapted.metrics["dev_base"]["mlm_accuracy"]
    assert [h["epoch"] for h in adapted.history] == [1, 2]


def test_saved_encoder_is_a_base_model(adapted, tmp_path: Path) -> None:
    adapted.save(tmp_path)
    classifier = PooledClassifier.from_encoder(str(tmp_path), ["negative", "positive"], 0.1, 32)
    saved = dict(classifier.encoder.named_parameters())
    trained = dict(adapted.model.base_model.named_parameters())
    name = "embeddings.word_embeddings.weight"
    assert torch.equal(saved[name], trained[name])
    assert not any("lm_head" in key for key in saved)


def test_bad_options_and_empty_texts_are_named() -> None:
    with pytest.raises(TrainingConfigError, match="mask_probability=1.5"):
        MlmTrainingConfig(mask_probability=1.5).validate()
    with pytest.raises(ValueError, match="no train texts"):
        train_mlm(CONFIG, ["  ", ""], TEXTS[:2])


def test_cli_writes_an_encoder_artifact(offline, tmp_path: Path) -> None:
    import csv

    for name, rows in (("train.csv", TEXTS), ("dev.csv", TEXTS[:6])):
        with open(tmp_path / name, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text"])
            writer.writerows([t] for t in rows)
    code = cli_main(["--registry", str(tmp_path / "models"), "train", "encoder", "--train", str(tmp_path / "train.csv"),
                     "--dev", str(tmp_path / "dev.csv"), "--name", "encoder-test", "--epochs", "1",
                     "--batch-size", "8", "--max-length", "32", "--no-progress", "--device", "cpu"])
    assert code == 0
    card = read_card(tmp_path / "models" / "encoder-test" / "v1")
    assert card.task == "encoder" and card.primary_metric == "mlm_accuracy"
    assert set(card.metrics) == {"dev", "dev_base"}
