"""Continued masked-language-model pre-training: adapt an encoder to a domain's unlabelled text.

Gururangan et al. (2020, "Don't stop pretraining") show that a little more MLM training on
text of the target domain (DAPT) or of the task itself (TAPT) before fine-tuning helps most
where the domain's language differs from the pre-training corpus, as financial news does.

The packaged encoders are sentence-transformers models shipped without their MLM head, so
the head starts untrained: for the first ``head_warmup_ratio`` of the steps only the head
learns (the encoder is frozen), so that its early, random gradients do not distort the
encoder. The result is saved as a plain encoder (``save_pretrained`` + tokenizer) that any
``--base-model`` accepts, as an artifact with task ``encoder`` and its dev masked-token loss and accuracy
before and after (accuracy is what promotion compares).
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import (
    AutoModelForMaskedLM,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    get_linear_schedule_with_warmup,
)

from core.batching import length_batches
from core.device import pick_device
from core.finetune.trained import adamw, check_options, seed_everything
from core.model_refs import resolve_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MlmTrainingConfig:
    """Every knob of a continued pre-training run; stored in the artifact's card."""

    base_model: str = "all-MiniLM-L6-v2"
    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 5e-5
    head_learning_rate: float = 1e-3     # the MLM head (new on sentence-transformers models) learns faster
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    head_warmup_ratio: float = 0.1       # share of steps that train only a newly made MLM head
    mask_probability: float = 0.15
    max_length: int = 64
    max_grad_norm: float = 1.0
    max_train_minutes: float | None = None  # stop at the first step past this budget
    seed: int = 13
    device: str | None = None
    eval_batch_size: int = 64
    progress: bool = True

    def validate(self) -> None:
        check_options(self, {
            "epochs": self.epochs >= 1, "batch_size": self.batch_size >= 1, "learning_rate": self.learning_rate > 0,
            "head_learning_rate": self.head_learning_rate > 0, "warmup_ratio": 0 <= self.warmup_ratio < 1,
            "head_warmup_ratio": 0 <= self.head_warmup_ratio < 1,
            "mask_probability": 0 < self.mask_probability < 1, "max_length": 8 <= self.max_length <= 8192,
        })


@dataclass
class AdaptedEncoder:
    """The adapted encoder, its tokenizer and the record of the run."""

    model: torch.nn.Module  # the *ForMaskedLM model; its base encoder is what gets saved
    tokenizer: object
    config: MlmTrainingConfig
    metrics: dict = field(default_factory=dict)   # "dev" and "dev_base" (before): mlm_loss, mlm_accuracy
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    train_examples_per_s: float = 0.0
    head_was_new: bool = False

    def save(self, path) -> None:
        """Save the encoder without the MLM head, so that it loads as a plain base model."""
        self.model.base_model.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)

    def hyperparameters(self) -> dict:
        return asdict(self.config)


def _check_texts(texts: list[str], role: str) -> list[str]:
    kept = [t.strip() for t in texts if isinstance(t, str) and t.strip()]
    if not kept:
        raise ValueError(f"no {role} texts for masked-language-model training: give at least one non-empty text")
    return kept


def _batches(collator, ids: list[list[int]], index: list[int], device: torch.device) -> dict[str, torch.Tensor]:
    batch = collator([{"input_ids": ids[i]} for i in index])
    return {k: v.to(device) for k, v in batch.items()}


def mlm_scores(model, collator, ids: list[list[int]], batch_size: int, device: torch.device, seed: int) -> dict:
    """Masked-token loss and accuracy over ``ids`` with a seeded mask, so two models are scored on the same masks."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    model.eval()
    total, correct, tokens = 0.0, 0, 0
    with torch.no_grad():
        for index in length_batches([len(x) for x in ids], batch_size, random.Random(seed), shuffle=False):
            batch = _batches(collator, ids, index, device)
            masked = batch["labels"] != -100
            n = int(masked.sum())
            if n:
                out = model(**batch)
                total += float(out.loss) * n
                correct += int((out.logits.argmax(-1)[masked] == batch["labels"][masked]).sum())
                tokens += n
    torch.random.set_rng_state(state)
    return {"mlm_loss": round(total / max(tokens, 1), 4), "mlm_accuracy": round(correct / max(tokens, 1), 4),
            "masked_tokens": tokens}


def train_mlm(config: MlmTrainingConfig, texts: list[str], dev_texts: list[str]) -> AdaptedEncoder:
    """Continue MLM pre-training of ``config.base_model`` on ``texts``; ``dev_texts`` give the loss before/after."""
    config.validate()
    texts, dev_texts = _check_texts(texts, "train"), _check_texts(dev_texts, "dev")
    resolved = resolve_model(config.base_model)
    seed_everything(config.seed)
    device_info = pick_device(config.device)
    device = device_info.device
    tokenizer = AutoTokenizer.from_pretrained(resolved.location)
    model, info = AutoModelForMaskedLM.from_pretrained(resolved.location, output_loading_info=True)
    model.to(device)
    head_params = [name for name, _ in model.named_parameters() if not name.startswith(model.base_model_prefix)]
    head_was_new = any(not key.startswith(model.base_model_prefix) for key in info["missing_keys"])
    log.info("MLM on %s: %d texts (%d dev); %s head", device_info.name, len(texts), len(dev_texts),
             "new" if head_was_new else "pre-trained")
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=config.mask_probability)
    ids = tokenizer(texts, truncation=True, max_length=config.max_length)["input_ids"]
    dev_ids = tokenizer(dev_texts, truncation=True, max_length=config.max_length)["input_ids"]

    steps = math.ceil(len(ids) / config.batch_size) * config.epochs
    head_steps = int(config.head_warmup_ratio * steps) if head_was_new else 0
    optimizer = adamw(model, config.learning_rate, config.weight_decay, config.head_learning_rate,
                      is_head=lambda name: name in head_params)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * steps), steps)
    with device_info.autocast():
        before = mlm_scores(model, collator, dev_ids, config.eval_batch_size, device, config.seed)
    log.info("dev before: %s", before)

    def set_encoder_trainable(trainable: bool) -> None:
        for name, param in model.named_parameters():
            if name not in head_params:
                param.requires_grad_(trainable)

    set_encoder_trainable(head_steps == 0)
    rng = random.Random(config.seed)
    history: list[dict] = []
    started, step, seen, out_of_time = time.monotonic(), 0, 0, False
    for epoch in range(1, config.epochs + 1):
        model.train()
        batches = length_batches([len(x) for x in ids], config.batch_size, rng, shuffle=True)
        losses = []
        bar = tqdm(batches, desc=f"MLM epoch {epoch}/{config.epochs}", disable=not config.progress, leave=False)
        for index in bar:
            if step == head_steps and head_steps:
                set_encoder_trainable(True)
                log.info("head warmed up after %d steps: training the whole encoder", step)
            batch = _batches(collator, ids, index, device)
            with device_info.autocast():
                loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            step, seen = step + 1, seen + len(index)
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
            if config.max_train_minutes and time.monotonic() - started > config.max_train_minutes * 60:
                log.info("stopping after %d steps: time budget of %.0f min reached", step, config.max_train_minutes)
                out_of_time = True
                break
        with device_info.autocast():
            dev = mlm_scores(model, collator, dev_ids, config.eval_batch_size, device, config.seed)
        history.append({"epoch": epoch, "steps": step, "train_loss": float(np.mean(losses)),
                        **{f"dev_{k}": v for k, v in dev.items()}, "seconds": round(time.monotonic() - started, 1)})
        log.info("MLM epoch %d: train loss %.4f, dev %s", epoch, history[-1]["train_loss"], dev)
        if out_of_time:
            break
    seconds = time.monotonic() - started
    model.eval()
    metrics = {"dev": dev, "dev_base": before}
    return AdaptedEncoder(model, tokenizer, config, metrics, history, seconds, seen / max(seconds, 1e-9),
                          head_was_new)
