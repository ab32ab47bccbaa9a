"""Classifier fine-tuning on 48 labelled support messages with the packaged MiniLM (CPU, small).

What the issue asks of a fine-tune, checked on a real (small) run: the loss falls, the saved
artifact predicts exactly what the in-memory model did, the card holds the metrics,
temperature scaling lowers the ECE of an over-confident model, and LoRA leaves the
encoder's own weights untouched while its adapters learn.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from core.artifacts import check_artifact, read_card
from core.calibration import fit_temperature, softmax
from core.cli import main
from core.data.labelled import LabelledTexts
from core.finetune.classifier import ClassifierTrainingConfig, TrainedClassifier, train_classifier
from core.finetune.distill import SoftLabelled, teacher_probabilities
from core.inference.classifier import TextClassifier, labelled_metrics
from core.metrics import classification_metrics, expected_calibration_error
from core.model_refs import resolve_model
from core.registry import Registry
from tests.core.retrieval_data import labelled_split

pytestmark = pytest.mark.slow

# head_init="random": the loss starts at about ln(4) and must visibly fall (a probe head starts near the end)
CONFIG = ClassifierTrainingConfig(epochs=2, batch_size=4, learning_rate=1e-4, head_learning_rate=5e-3,
                                  max_length=32, head_init="random", patience=2, device="cpu", progress=False)


def _split(name: str) -> LabelledTexts:
    texts, labels = labelled_split(name)
    return LabelledTexts(texts, labels, source=name)


@pytest.fixture(scope="module")
def trained(offline: None) -> TrainedClassifier:
    return train_classifier(CONFIG, _split("train"), _split("dev"))


def test_training_loss_decreases(trained: TrainedClassifier) -> None:
    first = trained.history[0]["first_loss"]
    last = trained.history[-1]["last_loss"]
    assert last < 0.7 * first, f"loss went from {first:.3f} to {last:.3f}"
    assert trained.metrics["dev"]["accuracy"] > 0.5  # 4 balanced topics: chance is 0.25


def test_artifact_round_trips_and_predicts_the_same(trained: TrainedClassifier, tmp_path: Path) -> None:
    dev = _split("dev")
    in_memory = TextClassifier(trained.model, trained.tokenizer, device="cpu").predict(dev.texts)
    registry = Registry(tmp_path / "models")
    path = registry.save("topics", trained.save, _card(trained))
    loaded = TextClassifier.load(path, device="cpu")
    again = loaded.predict(dev.texts)
    assert loaded.classes == trained.labels
    assert again.labels == in_memory.labels
    np.testing.assert_allclose(again.probabilities, in_memory.probabilities, atol=1e-5)
    assert loaded.temperature == pytest.approx(trained.metrics["temperature"])
    assert read_card(path).metrics["dev"]["accuracy"] == trained.metrics["dev"]["accuracy"]


def test_card_holds_metrics_and_hyperparameters(trained: TrainedClassifier, tmp_path: Path) -> None:
    path = Registry(tmp_path / "models").save("topics", trained.save, _card(trained))
    card = check_artifact(path)
    assert card.task == "classifier" and card.base_model == "all-MiniLM-L6-v2"
    assert set(card.metrics["dev"]) >= {"accuracy", "macro_f1", "ece"}
    assert card.hyperparameters["learning_rate"] == CONFIG.learning_rate
    assert card.labels == trained.labels
    assert (path / "head.safetensors").exists() and list((path / "encoder").glob("*.safetensors"))


def test_temperature_scaling_lowers_ece_of_an_overconfident_model() -> None:
    rng = np.random.default_rng(0)
    calibrated_logits = rng.normal(size=(2000, 3)) * 1.5
    labels = np.array([rng.choice(3, p=p) for p in softmax(calibrated_logits)])
    overconfident = calibrated_logits * 4.0
    before = expected_calibration_error(softmax(overconfident), labels)
    temperature = fit_temperature(overconfident, labels)
    after = expected_calibration_error(softmax(overconfident, temperature), labels)
    assert temperature == pytest.approx(4.0, rel=0.25)
    assert after < before / 2
    # accuracy is unchanged: temperature only rescales the logits
    assert classification_metrics(labels, softmax(overconfident, temperature))["accuracy"] == \
        classification_metrics(labels, softmax(overconfident))["accuracy"]


def test_lora_trains_only_adapter_weights(offline: None) -> None:
    from transformers import AutoModel

    base = AutoModel.from_pretrained(resolve_model("all-MiniLM-L6-v2").location).state_dict()
    config = replace(CONFIG, method="lora", lora_r=4, epochs=1, learning_rate=1e-3)
    result = train_classifier(config, _split("train"), _split("dev"))
    encoder = result.model.encoder
    trainable = {name for name, p in encoder.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    changed_adapters = 0
    for name, param in encoder.named_parameters():
        if "lora_B" in name:  # starts at zero: any non-zero value was learned
            changed_adapters += int(torch.count_nonzero(param).item() > 0)
        elif "lora_" not in name:
            key = name.removeprefix("base_model.model.").replace(".base_layer", "")
            assert torch.equal(param.detach().cpu(), base[key]), f"{name} changed under LoRA"
    assert changed_adapters > 0


def _card(trained: TrainedClassifier):
    from core.artifacts import ModelCard

    return ModelCard(name="topics", task="classifier", base_model=trained.config.base_model,
                     hyperparameters=trained.hyperparameters(), labels=trained.labels,
                     metrics={"dev": trained.metrics["dev"]}, extra={"history": trained.history})


def test_int8_onnx_is_measured_and_used_only_when_accepted(trained: TrainedClassifier, tmp_path: Path) -> None:
    from core.inference.onnx_classifier import OnnxTextClassifier, export_int8, load_classifier

    path = Registry(tmp_path / "models").save("topics", trained.save, _card(trained))
    dev = _split("dev")
    verdict = export_int8(path, dev)
    assert (path / "onnx" / "model.int8.onnx").exists()
    assert read_card(path).extra["serving"]["onnx_int8"] == verdict
    assert abs(verdict["torch_accuracy"] - trained.metrics["dev"]["accuracy"]) < 1e-9
    int8 = OnnxTextClassifier(path)
    agree = np.mean([a == b for a, b in zip(int8.predict(dev.texts).labels,
                                            TextClassifier.load(path, device="cpu").predict(dev.texts).labels,
                                            strict=True)])
    assert agree >= 0.8
    served = load_classifier(path, device="cpu")
    assert isinstance(served, OnnxTextClassifier) == verdict["accepted"]

    export_int8(path, dev, max_drop=-1.0)  # an impossible bar: rejected, PyTorch serves
    assert isinstance(load_classifier(path, device="cpu"), TextClassifier)


def test_a_later_run_may_change_precision_in_the_same_process():
    """accelerate keeps one device and precision per process; a GPU run followed by a CPU run
    (the GPU check's slice timing) must not be refused."""
    from core.device import DeviceInfo
    from core.finetune.classifier import _accelerator

    cpu = torch.device("cpu")
    # each call changes the precision of the process's accelerate state; plain Accelerator() refuses that
    assert _accelerator(DeviceInfo(device=cpu, bf16=True, num_threads=1), 1).mixed_precision == "bf16"
    accelerator = _accelerator(DeviceInfo(device=cpu, bf16=False, num_threads=1), 1)
    assert accelerator.mixed_precision == "no"
    assert accelerator.device.type == "cpu"


def test_agreement_targets_train_and_are_refused_without_agreement(offline: None) -> None:
    train, dev = _split("train"), _split("dev")
    config = replace(CONFIG, agreement_targets=True, label_smoothing=0.1, epochs=1)
    with pytest.raises(ValueError, match="agreement_targets needs each row's annotator agreement"):
        train_classifier(config, train, dev)
    split_votes = LabelledTexts(train.texts, train.labels, train.source,
                                agreement=[1.0 if i % 2 else 0.5 for i in range(len(train))])
    trained = train_classifier(replace(config, epochs=2), split_votes, dev)
    assert trained.history[-1]["last_loss"] < trained.history[0]["first_loss"]
    assert trained.hyperparameters()["agreement_targets"] is True


def test_a_student_trains_on_its_teachers_soft_rows(trained: TrainedClassifier, caplog: pytest.LogCaptureFixture
                                                    ) -> None:
    train, dev = _split("train"), _split("dev")
    teacher = TextClassifier(trained.model, trained.tokenizer, device="cpu")
    unlabelled = [f"{text} (forwarded)" for text in train.texts[:12]]
    soft = teacher_probabilities([teacher], unlabelled, "the fixture's model")
    with caplog.at_level("INFO", logger="core.finetune.classifier"):
        student = train_classifier(replace(CONFIG, label_smoothing=0.1), train, dev, soft)
    assert f"{len(train)} gold rows + 12 rows soft-labelled by the fixture's model" in caplog.text
    assert student.history[-1]["last_loss"] < student.history[0]["first_loss"]

    other_classes = SoftLabelled(unlabelled[:1], np.array([[0.5, 0.5]]), ["spam", "ham"], "a spam filter")
    with pytest.raises(ValueError, match="a spam filter: the teachers' classes"):
        train_classifier(CONFIG, train, dev, other_classes)


def test_the_cli_refuses_a_teacher_with_other_labels_before_labelling(trained: TrainedClassifier, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    trained.save(tmp_path / "teacher")
    rows = ["text,label", "win a prize now,spam", "lunch at noon?,ham"] + ["free money,spam", "see you soon,ham"] * 2
    (tmp_path / "mail.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (tmp_path / "unlabelled.csv").write_text("text\nclaim your reward\n", encoding="utf-8")
    code = main(["--registry", str(tmp_path / "models"), "train", "classifier", "--train", str(tmp_path / "mail.csv"),
                 "--dev", str(tmp_path / "mail.csv"), "--name", "spam", "--teacher", str(tmp_path / "teacher"),
                 "--unlabelled", str(tmp_path / "unlabelled.csv")])
    out = capsys.readouterr()
    assert code == 1 and "the training data's labels are ['ham', 'spam']" in out.err + out.out
    assert not (tmp_path / "models").exists()


def test_rdrop_trains_and_is_recorded(offline: None) -> None:
    trained = train_classifier(replace(CONFIG, rdrop=1.0), _split("train"), _split("dev"))
    assert trained.history[-1]["last_loss"] < trained.history[0]["first_loss"]
    assert trained.hyperparameters()["rdrop"] == 1.0


def test_ema_weights_are_scored_and_kept_beside_the_raw_ones(offline: None, tmp_path) -> None:
    trained = train_classifier(replace(CONFIG, ema=0.9), _split("train"), _split("dev"))
    assert trained.hyperparameters()["ema"] == 0.9
    for epoch in trained.history:  # dev scores the averaged weights and logs the raw ones beside them
        assert {"dev_macro_f1", "dev_raw_macro_f1", "dev_raw_accuracy"} <= epoch.keys()
    trained.save(tmp_path / "model")
    best = trained.history[trained.best_epoch - 1]
    saved = labelled_metrics(TextClassifier.load(tmp_path / "model"), _split("dev"))
    assert saved["accuracy"] == pytest.approx(best["dev_accuracy"])  # what was saved is what dev scored
