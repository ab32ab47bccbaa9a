"""What the embedder and re-ranker trainers share: option checks, seeding, and the result.

:class:`TrainedModel` is what ``train_embedder``/``train_reranker`` return: the model in
memory, its dev metrics, a per-epoch log and the per-step losses. Its :meth:`~TrainedModel.save`
is the callback that :func:`core.artifacts.write_artifact` and ``Registry.save`` take, and
:meth:`~TrainedModel.card` fills the model card from the run.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.artifacts import ModelCard

log = logging.getLogger(__name__)

PRIMARY_METRIC = "mrr@10"  # what keep-best selects on and what promotion compares, for both tasks


class TrainingConfigError(ValueError):
    """A training option out of its allowed range; the message names each bad option."""


def check_options(config: object, checks: dict[str, bool], extra: list[str] = ()) -> None:
    """Raise TrainingConfigError listing every option whose check is False (plus ``extra`` problems)."""
    bad = [f"{name}={getattr(config, name)!r}" for name, ok in checks.items() if not ok] + list(extra)
    if bad:
        raise TrainingConfigError(
            f"invalid {type(config).__name__} option(s) {', '.join(bad)}; see the field comments in "
            f"{type(config).__module__}.{type(config).__name__} for the allowed ranges"
        )


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch, so the same data and config give the same model on one machine."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def adamw(model: torch.nn.Module, learning_rate: float, weight_decay: float,
          head_learning_rate: float | None = None,
          is_head: Callable[[str], bool] = lambda name: "classifier" in name) -> torch.optim.AdamW:
    """AdamW without weight decay on biases and normalisation weights (the 1-d parameters).

    With ``head_learning_rate``, parameters of a head (``is_head(name)``; by default names containing
    ``classifier``, as in ``*ForSequenceClassification`` models) get that rate: a freshly
    initialised head learns slowly at an encoder's learning rate.
    """
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        head = head_learning_rate is not None and is_head(name)
        key = (head_learning_rate if head else learning_rate, weight_decay if param.ndim > 1 else 0.0)
        groups.setdefault(key, []).append(param)
    return torch.optim.AdamW([{"params": params, "lr": lr, "weight_decay": decay}
                              for (lr, decay), params in groups.items()], lr=learning_rate)


class KeepBest:
    """Keep-best and early stopping on one dev metric (higher is better).

    After each epoch, :meth:`update` records the dev metrics; a better epoch's weights are
    copied to the CPU (unless it is the last planned epoch: they stay in the model). It
    returns True when ``patience`` epochs passed without a gain. :meth:`restore` puts the
    best weights back.
    """

    def __init__(self, metric: str, patience: int, epochs: int, initial: dict):
        self.metric = metric
        self.patience = patience
        self.epochs = epochs
        self.best_epoch = 0
        self.best_metrics = initial  # the model before training, until an epoch is scored
        self._state: dict | None = None
        self._last_epoch = 0

    def update(self, epoch: int, metrics: dict, model: torch.nn.Module) -> bool:
        self._last_epoch = epoch
        if self.best_epoch == 0 or metrics[self.metric] > self.best_metrics[self.metric]:
            self.best_epoch, self.best_metrics = epoch, metrics
            self._state = None
            if epoch < self.epochs:
                self._state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            return False
        if epoch - self.best_epoch >= self.patience:
            log.info("early stop after epoch %d: no dev %s gain for %d epoch(s)", epoch, self.metric, self.patience)
            return True
        return False

    def restore(self, model: torch.nn.Module) -> None:
        if self.best_epoch != self._last_epoch and self._state is not None:
            model.load_state_dict(self._state)
            log.info("kept epoch %d (dev %s %.4f)", self.best_epoch, self.metric, self.best_metrics[self.metric])


def save_sentence_model(model: Any, path: str | Path) -> None:
    """Write a SentenceTransformer or CrossEncoder into ``path`` (safetensors + config + tokenizer).

    No README model card: ``card.json``, written by ``write_artifact``, is the card, and the
    library's generated README would describe a hub model that does not exist.
    """
    model.save(str(path), safe_serialization=True, create_model_card=False)


@dataclass
class TrainedModel:
    """A fine-tuned embedder or re-ranker and the record of how it was trained.

    ``metrics`` maps a split to its scores: ``"dev"`` for the kept (best) epoch, and
    ``"dev_base"`` for the model before fine-tuning, so a card shows what training gained.
    ``history`` has one dict per epoch; ``step_losses`` one training loss per optimizer step.
    """

    model: Any  # sentence_transformers.SentenceTransformer or CrossEncoder
    task: str   # "embedder" or "reranker"
    config: Any  # the frozen training config
    metrics: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    best_epoch: int = 0
    train_seconds: float = 0.0

    def save(self, path: str | Path) -> None:
        """The save callback for ``write_artifact(target, trained.save, card)``."""
        save_sentence_model(self.model, path)

    def hyperparameters(self) -> dict:
        return dataclasses.asdict(self.config)

    def card(self, name: str, data: list[dict] = (), **extra: Any) -> ModelCard:
        """A model card for this run; ``data`` holds ``core.artifacts.data_record`` entries."""
        return ModelCard(
            name=name, task=self.task, base_model=self.config.base_model, data=list(data),
            hyperparameters=self.hyperparameters(), metrics=dict(self.metrics), primary_metric=PRIMARY_METRIC,
            extra={"history": self.history, "best_epoch": self.best_epoch,
                   "train_seconds": round(self.train_seconds, 1), **extra},
        )
