"""An optional CPU serving path for classifiers: ONNX export with dynamic int8 quantization.

Int8 weights make the model about 4x smaller and usually faster on a CPU, but quantization
can cost accuracy. So the int8 model is only *used* after it was measured: :func:`export_int8`
writes ``onnx/model.int8.onnx`` into the artifact, scores it and the PyTorch model on the
same labelled data (the dev split), and records both in the card under
``extra["serving"]["onnx_int8"]`` with ``accepted`` = int8 accuracy within ``max_drop``
(1 point) of PyTorch. :func:`load_classifier` serves the int8 model only when the card says
it was accepted and no GPU is present; otherwise the PyTorch :class:`TextClassifier`.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from core.artifacts import read_card, update_card
from core.atomic import atomic_write_bytes
from core.classifier_model import CONFIG_FILE, ENCODER_DIR, PooledClassifier
from core.data.labelled import LabelledTexts
from core.inference.classifier import ClassifierLoadError, Prediction, TextClassifier, calibrated_prediction

log = logging.getLogger(__name__)

ONNX_FILE = "onnx/model.int8.onnx"
MAX_ACCURACY_DROP = 0.01


class OnnxTextClassifier:
    """The int8 ONNX model of a classifier artifact, with :class:`TextClassifier`'s ``predict``."""

    def __init__(self, path: Path, batch_size: int = 64, threads: int | None = None):
        import json

        import onnxruntime as ort
        from transformers import AutoTokenizer

        path = Path(path)
        if not (path / ONNX_FILE).exists():
            raise ClassifierLoadError(f"{path} has no {ONNX_FILE}; create it with `python -m core export-onnx`")
        config = json.loads((path / CONFIG_FILE).read_text())
        self.classes: list[str] = config["labels"]
        self.temperature = float(config.get("temperature", 1.0))
        self.max_length = int(config["max_length"])
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(path / ENCODER_DIR)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path / ONNX_FILE), options, providers=["CPUExecutionProvider"])

    def logits(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), len(self.classes)), np.float32)
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths together: little padding
        for start in range(0, len(order), self.batch_size):
            index = order[start:start + self.batch_size]
            batch = self.tokenizer.pad({"input_ids": [ids[i] for i in index]}, return_tensors="np")
            out[index] = self.session.run(["logits"], {"input_ids": batch["input_ids"].astype(np.int64),
                                                       "attention_mask": batch["attention_mask"].astype(np.int64)})[0]
        return out

    def predict(self, texts: list[str]) -> Prediction:
        return calibrated_prediction(self, texts)


def _export_fp32(model: PooledClassifier, tokenizer, target: Path) -> None:
    import torch

    sample = tokenizer(["a short text", "a somewhat longer second text for the export"], padding=True,
                       return_tensors="pt")
    axes = {"batch": 0, "tokens": 1}
    with torch.no_grad():
        torch.onnx.export(
            model.eval(), (sample["input_ids"], sample["attention_mask"]), str(target),
            input_names=["input_ids", "attention_mask"], output_names=["logits"],
            dynamic_axes={"input_ids": {v: k for k, v in axes.items()},
                          "attention_mask": {v: k for k, v in axes.items()}, "logits": {0: "batch"}},
            opset_version=17, dynamo=False,
        )


def _accuracy_and_speed(classifier, data: LabelledTexts) -> tuple[float, float]:
    started = time.monotonic()
    labels = classifier.predict(data.texts).labels
    seconds = time.monotonic() - started
    return float(np.mean([p == y for p, y in zip(labels, data.labels, strict=True)])), len(data) / max(seconds, 1e-9)


def export_int8(path: str | Path, data: LabelledTexts, max_drop: float = MAX_ACCURACY_DROP) -> dict:
    """Write the artifact's int8 ONNX model, measure it against PyTorch on ``data``, record the verdict."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path = Path(path)
    read_card(path)
    torch_classifier = TextClassifier.load(path, device="cpu")
    unseen = sorted(set(data.labels) - set(torch_classifier.classes))
    if unseen:
        raise ValueError(f"{data.source}: label(s) {unseen[:10]} are not among the model's classes "
                         f"{torch_classifier.classes[:10]}")
    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp) / "model.onnx", Path(tmp) / "model.int8.onnx"
        _export_fp32(torch_classifier.model, torch_classifier.tokenizer, fp32)
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
        (path / ONNX_FILE).parent.mkdir(exist_ok=True)
        atomic_write_bytes(path / ONNX_FILE, int8.read_bytes())
    torch_accuracy, torch_speed = _accuracy_and_speed(torch_classifier, data)
    onnx_accuracy, onnx_speed = _accuracy_and_speed(OnnxTextClassifier(path), data)
    verdict = {"accepted": onnx_accuracy >= torch_accuracy - max_drop, "data": data.source, "examples": len(data),
               "accuracy": onnx_accuracy, "torch_accuracy": torch_accuracy, "max_drop": max_drop,
               "examples_per_s": round(onnx_speed, 1), "torch_examples_per_s": round(torch_speed, 1),
               "file": ONNX_FILE, "bytes": (path / ONNX_FILE).stat().st_size}
    update_card(path, lambda card: card.extra.setdefault("serving", {}).update(onnx_int8=verdict))
    log.info("int8 ONNX of %s: accuracy %.4f vs PyTorch %.4f -> %s", path, onnx_accuracy, torch_accuracy,
             "accepted" if verdict["accepted"] else "rejected")
    return verdict


def load_classifier(path: str | Path, device: str | None = None, batch_size: int = 64):
    """The int8 ONNX classifier when its card accepted it and we serve on the CPU, else PyTorch."""
    import torch

    path = Path(path)
    verdict = read_card(path).extra.get("serving", {}).get("onnx_int8", {})
    on_cpu = device == "cpu" or (device is None and not torch.cuda.is_available())
    if verdict.get("accepted") and on_cpu and (path / ONNX_FILE).exists():
        return OnnxTextClassifier(path, batch_size)
    return TextClassifier.load(path, device, batch_size)
