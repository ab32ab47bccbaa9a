"""A small demo sentiment model: MiniLM fine-tuned on the shipped demo sentences.

`make demo` needs a ``production`` sentiment model; the real one is trained by
``python -m benchmarks.sentiment_model`` on PhraseBank + Twitter financial news. When none
exists, this trains one in about a minute on the CPU from ``demo/sentiment_train.jsonl``
(about 250 sentences written for the demo; rows with sha1 bucket 0 are the dev split) and
registers it, promoting it only when the name has no ``production`` version yet.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from apps.finance_monitor.settings import DEMO_DIR
from core.artifacts import ModelCard, data_record
from core.data.labelled import LabelledTexts, load_labelled
from core.registry import ModelNotFoundError, Registry

log = logging.getLogger(__name__)

DEMO_TRAIN = DEMO_DIR / "sentiment_train.jsonl"


@dataclass(frozen=True)
class DemoModelResult:
    path: Path
    version: int
    promoted: bool
    reason: str
    dev_metrics: dict


def split_dev(data: LabelledTexts, dev_bucket: int = 0) -> tuple[LabelledTexts, LabelledTexts]:
    """Train/dev by ``sha1(text) % 10`` (BENCHMARKS.md's split function): bucket ``dev_bucket`` is dev."""
    from core.data.splits import split_bucket

    train = [(t, y) for t, y in zip(data.texts, data.labels, strict=True) if split_bucket(t) != dev_bucket]
    dev = [(t, y) for t, y in zip(data.texts, data.labels, strict=True) if split_bucket(t) == dev_bucket]
    return (LabelledTexts([t for t, _ in train], [y for _, y in train], f"{data.source}/train"),
            LabelledTexts([t for t, _ in dev], [y for _, y in dev], f"{data.source}/dev"))


def has_production(registry: Registry, name: str) -> bool:
    try:
        registry.path(name, "production")
        return True
    except ModelNotFoundError:
        return False


def train_demo_model(registry: Registry, name: str = "finance-sentiment", data_path: Path = DEMO_TRAIN,
                     epochs: int = 2, max_rows: int | None = None, device: str | None = None,
                     progress: bool = True) -> DemoModelResult:
    """Fine-tune MiniLM on the demo sentences, save it as a new version of ``name``, promote if none is."""
    # imported here: the stream process (`run --ensure-model`) should not carry the training stack
    from core.finetune.classifier import ClassifierTrainingConfig, train_classifier

    data = load_labelled(data_path)
    if max_rows is not None:
        data = LabelledTexts(data.texts[:max_rows], data.labels[:max_rows], data.source)
    train, dev = split_dev(data)
    config = ClassifierTrainingConfig(epochs=epochs, max_length=64, batch_size=16, learning_rate=5e-5,
                                      patience=epochs, device=device, progress=progress)
    log.info("training demo sentiment model on %d sentences (%d dev)", len(train), len(dev))
    trained = train_classifier(config, train, dev)
    card = ModelCard(
        name=name, task="classifier", base_model=config.base_model,
        data=[data_record(data_path, "train", rows=len(train)), data_record(data_path, "dev", rows=len(dev))],
        hyperparameters=trained.hyperparameters(), labels=trained.labels, metrics={"dev": trained.metrics["dev"]},
        extra={"purpose": "demo model trained on apps/finance_monitor/demo/sentiment_train.jsonl; "
                          "train the real one with `python -m benchmarks.sentiment_model`",
               "temperature": trained.metrics["temperature"], "best_epoch": trained.best_epoch},
    )
    path = registry.save(name, trained.save, card)
    if has_production(registry, name):
        promoted, reason = False, f"{name} already has a production version; v{card.version} is kept unpromoted"
    else:
        result = registry.promote(name, card.version)
        promoted, reason = result.promoted, result.reason
    return DemoModelResult(path, card.version, promoted, reason, trained.metrics["dev"])


def ensure_model(config, epochs: int = 2) -> None:
    """Train and promote the demo model when ``config.model_name`` has no production version (prints progress)."""
    registry = Registry(config.registry_root)
    if has_production(registry, config.model_name):
        return
    print(f"no production {config.model_name!r} model in {registry.root}: training the demo model (about a minute)")
    result = train_demo_model(registry, config.model_name, epochs=epochs, device=config.device, progress=False)
    print(f"saved {result.path}; {result.reason}")
