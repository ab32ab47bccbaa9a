"""Fine-tune a cross-encoder re-ranker on (query, positive) pairs with mined negatives.

A cross-encoder reads query and passage together and outputs one relevance logit; it is
too slow to search a corpus, so it re-orders the few candidates a bi-encoder retrieved.
Training mirrors that use: each train query gets its positive (label 1) and
``negatives_per_query`` hard negatives (label 0) mined with a bi-encoder
(``mining_model``), and the loss is binary cross-entropy on the logits, with the positives
weighted by the negative:positive ratio so that both classes count alike.

No trained cross-encoder ships offline, so the default starts from the MiniLM encoder
with a new, randomly initialised one-logit head (``CrossEncoder(base, num_labels=1)``).

Dev evaluation (:func:`evaluate_reranker`) re-ranks, for each dev pair, its positive among
``eval_candidates - 1`` negatives mined the same way (padded with random non-positives):
``mrr@10`` and ``accuracy@1``. The epoch with the best dev MRR@10 is kept. The loop is
written out because ``CrossEncoderTrainer`` needs the ``datasets`` package.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.cross_encoder import CrossEncoder
from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from core.data.pairs import TextPairs
from core.device import pick_device
from core.finetune.embedder import sentence_encoder
from core.finetune.negatives import MiningConfig, fill_negatives, mine_negatives
from core.finetune.trained import (
    PRIMARY_METRIC,
    KeepBest,
    TrainedModel,
    adamw,
    check_options,
    save_sentence_model,
    seed_everything,
)
from core.model_refs import resolve_model
from core.ranking_metrics import ranking_metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RerankerTrainingConfig:
    """Every knob of a cross-encoder fine-tune; stored in the model card as its hyper-parameters."""

    base_model: str = "all-MiniLM-L6-v2"    # encoder to start from (a cross-encoder artifact continues training)
    mining_model: str = "all-MiniLM-L6-v2"  # bi-encoder that mines the negatives (train and dev)
    negatives_per_query: int = 3            # >= 1 mined negatives per train pair
    eval_candidates: int = 10               # >= 2 candidates per dev pair: its positive + mined negatives
    epochs: int = 2                         # >= 1
    batch_size: int = 16                    # (query, passage) rows per step, rounded to whole queries
    learning_rate: float = 2e-5             # > 0, for the encoder
    head_learning_rate: float = 1e-3        # > 0, for the new one-logit head (it starts random)
    weight_decay: float = 0.01              # >= 0; not applied to biases and LayerNorm weights
    warmup_ratio: float = 0.1               # [0, 1)
    max_grad_norm: float = 1.0              # > 0
    max_seq_length: int = 256               # [8, 8192] tokens of query and passage together
    balance_classes: bool = True            # weight positives by the negative:positive ratio in the loss
    mining: MiningConfig = field(default_factory=MiningConfig)
    patience: int = 2                       # >= 1 epochs without a dev MRR@10 gain before stopping
    seed: int = 13
    device: str | None = None               # None: CUDA if available, else the CPU
    eval_batch_size: int = 64               # >= 1
    progress: bool = True

    def validate(self) -> None:
        check_options(self, {
            "negatives_per_query": self.negatives_per_query >= 1, "eval_candidates": self.eval_candidates >= 2,
            "epochs": self.epochs >= 1, "batch_size": self.batch_size >= 1, "learning_rate": self.learning_rate > 0,
            "head_learning_rate": self.head_learning_rate > 0, "weight_decay": self.weight_decay >= 0,
            "warmup_ratio": 0 <= self.warmup_ratio < 1,
            "max_grad_norm": self.max_grad_norm > 0,
            "max_seq_length": 8 <= self.max_seq_length <= 8192,
            "patience": self.patience >= 1, "eval_batch_size": self.eval_batch_size >= 1,
        }, extra=self.mining.problems())


@dataclass(frozen=True)
class RerankTask:
    """Per dev pair: the query, its candidate passages, and which candidate is the positive."""

    queries: list[str]
    candidates: list[list[str]]
    positive_index: list[int]


def rerank_task(pairs: TextPairs, negatives: list[list[str]], seed: int) -> RerankTask:
    """Candidates = positive + ``negatives[i]``, shuffled with ``seed`` (ties must not favour the positive)."""
    rng = random.Random(seed)
    candidates, positions = [], []
    for positive, row in zip(pairs.positives, negatives, strict=True):
        texts = [positive, *row]
        order = list(range(len(texts)))
        rng.shuffle(order)
        candidates.append([texts[i] for i in order])
        positions.append(order.index(0))
    return RerankTask(list(pairs.queries), candidates, positions)


def evaluate_reranker(model: CrossEncoder, task: RerankTask, batch_size: int = 64) -> dict[str, float]:
    """``mrr@10`` and ``accuracy@1`` of each pair's positive among its candidates (one predict call)."""
    flat = [(query, text) for query, texts in zip(task.queries, task.candidates, strict=True) for text in texts]
    flat_scores = model.predict(flat, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True)
    width = max(map(len, task.candidates))
    scores = np.full((len(task.queries), width), -np.inf)  # (pairs, candidates); -inf pads short rows
    start = 0
    for row, texts in enumerate(task.candidates):
        scores[row, :len(texts)] = flat_scores[start:start + len(texts)]
        start += len(texts)
    metrics = ranking_metrics(scores, [{i} for i in task.positive_index], recall_at=(1,), mrr_at=10)
    return {"mrr@10": metrics["mrr@10"], "accuracy@1": metrics["recall@1"], "queries": metrics["queries"],
            "candidates": width}


def _mine(config: RerankerTrainingConfig, train_pairs: TextPairs, dev_pairs: TextPairs,
          device: torch.device) -> tuple[list[list[str]], RerankTask]:
    """Train negatives (given + mined) and the dev re-rank task, from the mining bi-encoder."""
    embedder = SentenceTransformer(resolve_model(config.mining_model).location, device=str(device))
    embedder.max_seq_length = config.max_seq_length
    encode = sentence_encoder(embedder, config.eval_batch_size)
    given = sorted({text for row in train_pairs.negatives for text in row})
    mined = mine_negatives(encode, train_pairs, config.negatives_per_query, config.mining, extra_corpus=given)
    train_negatives = [list(dict.fromkeys([*a, *b])) for a, b in zip(train_pairs.negatives, mined, strict=True)]
    dev_mined = mine_negatives(encode, dev_pairs, config.eval_candidates - 1, config.mining)
    dev_negatives = fill_negatives(dev_pairs, dev_mined, config.eval_candidates - 1, config.seed)
    return train_negatives, rerank_task(dev_pairs, dev_negatives, config.seed)


def train_reranker(config: RerankerTrainingConfig, train_pairs: TextPairs, dev_pairs: TextPairs) -> TrainedModel:
    """Fine-tune a cross-encoder on ``train_pairs``; keep the epoch with the best dev MRR@10."""
    config.validate()
    base = resolve_model(config.base_model)
    seed_everything(config.seed)
    device_info = pick_device(config.device)
    train_negatives, dev_task = _mine(config, train_pairs, dev_pairs, device_info.device)
    # one group per train pair: (query, passage, label) rows, 1.0 for the positive, 0.0 for each negative
    groups = [[(q, p, 1.0)] + [(q, n, 0.0) for n in negs]
              for q, p, negs in zip(train_pairs.queries, train_pairs.positives, train_negatives, strict=True)]
    rows = sum(len(group) for group in groups)
    ratio = (rows - len(groups)) / len(groups)
    # whole groups per batch: every batch has the same positive:negative mix, so step losses compare
    pairs_per_batch = max(1, round(config.batch_size / (1 + ratio)))
    steps_per_epoch = math.ceil(len(groups) / pairs_per_batch)
    total_steps = steps_per_epoch * config.epochs
    log.info("training reranker %s on %s: %d pairs -> %d rows (%.1f negatives per positive), %d steps",
             config.base_model, device_info.name, len(groups), rows, ratio, total_steps)

    model = CrossEncoder(base.location, num_labels=1, max_length=config.max_seq_length,
                         device=str(device_info.device))
    pos_weight = torch.tensor(max(ratio, 1.0), device=device_info.device) if config.balance_classes else None
    loss_fn = BinaryCrossEntropyLoss(model, pos_weight=pos_weight)
    optimizer = adamw(model, config.learning_rate, config.weight_decay, config.head_learning_rate)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(config.warmup_ratio * total_steps), total_steps)
    base_metrics = evaluate_reranker(model, dev_task, config.eval_batch_size)
    log.info("dev before fine-tuning: %s", base_metrics)

    rng = random.Random(config.seed)
    best = KeepBest(PRIMARY_METRIC, config.patience, config.epochs, initial=base_metrics)
    history: list[dict] = []
    step_losses: list[float] = []
    started = time.monotonic()
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = list(range(len(groups)))
        rng.shuffle(order)
        epoch_losses = []
        batches = [[row for i in order[start:start + pairs_per_batch] for row in groups[i]]
                   for start in range(0, len(order), pairs_per_batch)]
        for batch in tqdm(batches, desc=f"reranker epoch {epoch}/{config.epochs}", disable=not config.progress,
                          leave=False):
            queries = [query for query, _, _ in batch]
            passages = [passage for _, passage, _ in batch]
            labels = torch.tensor([label for _, _, label in batch], device=device_info.device)  # (batch,)
            with device_info.autocast():
                loss = loss_fn([queries, passages], labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step_losses.append(float(loss.item()))
            epoch_losses.append(step_losses[-1])
        model.eval()
        dev = evaluate_reranker(model, dev_task, config.eval_batch_size)
        elapsed = time.monotonic() - started
        history.append({"epoch": epoch, "train_loss": float(np.mean(epoch_losses)), "steps": len(batches),
                        "seconds": round(elapsed, 1), **{f"dev_{k}": v for k, v in dev.items()}})
        log.info("epoch %d: loss %.4f, dev %s (%.0f s)", epoch, history[-1]["train_loss"], dev, elapsed)
        if best.update(epoch, dev, model):
            break
    best.restore(model)
    model.eval()
    return TrainedModel(model=model, task="reranker", config=config,
                        metrics={"dev": best.best_metrics, "dev_base": base_metrics}, history=history,
                        step_losses=step_losses, best_epoch=best.best_epoch, train_seconds=time.monotonic() - started)


def save_reranker(model: CrossEncoder, path: str | Path) -> None:
    """Write ``model`` into the folder ``path`` (safetensors weights, config, tokenizer)."""
    save_sentence_model(model, path)
