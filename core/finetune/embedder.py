"""Fine-tune a bi-encoder (sentence-transformers) for retrieval on (query, positive) pairs.

Recipe: MultipleNegativesRankingLoss (InfoNCE): each query must score its own positive
above every other positive in the batch (and above its hard negatives, when given or
mined), on cosine similarity times ``scale``. AdamW, linear warm-up and decay, gradient
clipping, bf16 autocast on CUDA. After every epoch the model is scored on dev pairs
(:func:`evaluate_embedder`: Recall@1/@5 and MRR@10 of the positive among all dev
positives) and the epoch with the best dev MRR@10 is kept; training stops after
``patience`` epochs without a gain.

The loop is written out (rather than ``SentenceTransformerTrainer``) because the trainer
needs the ``datasets`` package, which is not a dependency here; the loss, the batch
sampler and the model are the library's own.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.sampler import NoDuplicatesBatchSampler
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from sentence_transformers.util import batch_to_device
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from core.data.pairs import TextPairs
from core.device import pick_device
from core.finetune.negatives import EncodeFn, MiningConfig, fill_negatives, mine_negatives
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
class EmbedderTrainingConfig:
    """Every knob of a bi-encoder fine-tune; stored in the model card as its hyper-parameters."""

    base_model: str = "all-MiniLM-L6-v2"  # a sentence-transformers model reference (core.model_refs)
    epochs: int = 3                        # >= 1
    batch_size: int = 32                   # pairs per step; more in-batch negatives with larger batches
    learning_rate: float = 2e-5            # > 0
    weight_decay: float = 0.01             # >= 0; not applied to biases and LayerNorm weights
    warmup_ratio: float = 0.1              # [0, 1): share of the steps with a rising learning rate
    max_grad_norm: float = 1.0             # > 0
    max_seq_length: int = 128              # [8, 8192] tokens per text
    scale: float = 20.0                    # > 0: cosine similarity x scale = logits (temperature 0.05)
    mined_negatives: int = 0               # >= 0 hard negatives per pair mined with the base model; 0: none
    mining: MiningConfig = field(default_factory=MiningConfig)
    one_pair_per_label: bool = True        # labelled pairs: no same-label pair in a batch (no false negatives)
    patience: int = 2                      # >= 1 epochs without a dev MRR@10 gain before stopping
    seed: int = 13
    device: str | None = None              # None: CUDA if available, else the CPU
    eval_batch_size: int = 128             # >= 1
    progress: bool = True                  # tqdm bar per epoch

    def validate(self) -> None:
        check_options(self, {
            "epochs": self.epochs >= 1, "batch_size": self.batch_size >= 2, "learning_rate": self.learning_rate > 0,
            "weight_decay": self.weight_decay >= 0, "warmup_ratio": 0 <= self.warmup_ratio < 1,
            "max_grad_norm": self.max_grad_norm > 0, "max_seq_length": 8 <= self.max_seq_length <= 8192,
            "scale": self.scale > 0, "mined_negatives": self.mined_negatives >= 0, "patience": self.patience >= 1,
            "eval_batch_size": self.eval_batch_size >= 1,
        }, extra=self.mining.problems())


def sentence_encoder(model: SentenceTransformer, batch_size: int) -> EncodeFn:
    """texts -> (n, dim) float32 L2-normalised embeddings from ``model`` (no progress bar)."""
    def encode(texts: list[str]) -> np.ndarray:
        vectors = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)
    return encode


def evaluate_embedder(encode: EncodeFn, pairs: TextPairs) -> dict[str, float]:
    """``recall@1``, ``recall@5``, ``mrr@10`` of each distinct query's positives among all distinct positives.

    The candidates are every distinct positive of ``pairs``; a query's relevant set is its
    known positives (for labelled pairs: every candidate of its label). A candidate equal
    to the query text is removed from that query's ranking (it would be a free hit).
    """
    corpus = pairs.corpus()
    position = {text: i for i, text in enumerate(corpus)}
    known = pairs.known_positives()
    queries = list(known)
    relevant = [{position[t] for t in known[q] if t in position and t != q} for q in queries]
    scores = encode(queries) @ encode(corpus).T  # (queries, candidates) cosine similarities
    for row, query in enumerate(queries):
        if query in position:
            scores[row, position[query]] = -np.inf
    return {**ranking_metrics(scores, relevant, recall_at=(1, 5), mrr_at=10), "candidates": len(corpus)}


class _Rows:
    """Training rows as the library's batch samplers read them: ``column_names`` and dict rows."""

    def __init__(self, columns: list[str], rows: list[tuple[str, ...]]):
        self.column_names = columns
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, str]:
        return dict(zip(self.column_names, self.rows[index], strict=True))


def _training_rows(config: EmbedderTrainingConfig, pairs: TextPairs, encode: EncodeFn) -> _Rows:
    """(query, positive[, negative]) rows: one triplet per hard negative when there are any.

    For labelled pairs each row also carries its label (a value the sampler sees, the loss
    does not), so that no two pairs of one label share a batch (see :func:`_batch_plan`),
    unless ``config.one_pair_per_label`` is off.
    """
    negatives = [list(given) for given in pairs.negatives]
    if config.mined_negatives:
        given = sorted({text for row in negatives for text in row})
        mined = mine_negatives(encode, pairs, config.mined_negatives, config.mining, extra_corpus=given)
        negatives = [list(dict.fromkeys(a + b)) for a, b in zip(negatives, mined, strict=True)]
    labels = None
    if pairs.labels is not None and config.one_pair_per_label:
        labels = [f"\0label:{label}" for label in pairs.labels]
    if not any(negatives):
        rows = [(q, p) for q, p in zip(pairs.queries, pairs.positives, strict=True)]
        columns = ["query", "positive"]
    else:
        # every row needs the same columns: pairs without a hard negative get a random one
        negatives = fill_negatives(pairs, negatives, minimum=1, seed=config.seed)
        rows = [(q, p, n) for q, p, row in zip(pairs.queries, pairs.positives, negatives, strict=True) for n in row]
        columns = ["query", "positive", "negative"]
        labels = [label for label, row in zip(labels, negatives, strict=True) for _ in row] if labels else None
        dropped = sum(not row for row in negatives)
        if dropped:
            log.warning("%d pair(s) have no text that could serve as a negative and are left out", dropped)
    if labels is not None:
        rows = [(*row, label) for row, label in zip(rows, labels, strict=True)]
        columns.append("label")
    return _Rows(columns, rows)


def _batch_plan(rows: _Rows, config: EmbedderTrainingConfig) -> list[list[list[int]]]:
    """Row indices per step, per epoch, from the library's NoDuplicatesBatchSampler.

    MultipleNegativesRankingLoss treats every other positive in the batch as a negative for
    a query. If one text appears twice in a batch (a popular answer paired with several
    questions, or one pair repeated once per mined negative), the loss is asked to rank a
    text below itself: an unreachable target whose gradient pushes identical texts apart.
    The sampler builds batches in which no value repeats across any column. For labelled
    pairs the label is one of those values, so every in-batch negative has another label
    (two texts of one label are positives, not negatives); batches then hold at most one
    pair per label, and with few labels mined negatives add the missing contrast. Planned
    up front because the sampler's batch count varies, and the learning-rate schedule needs
    the true number of steps.
    """
    generator = torch.Generator()
    sampler = NoDuplicatesBatchSampler(rows, batch_size=config.batch_size, drop_last=False,
                                       generator=generator, seed=config.seed)
    plan = []
    for epoch in range(config.epochs):
        sampler.set_epoch(epoch)
        plan.append([list(batch) for batch in sampler])
    return plan


def train_embedder(config: EmbedderTrainingConfig, train_pairs: TextPairs, dev_pairs: TextPairs) -> TrainedModel:
    """Fine-tune ``config.base_model`` on ``train_pairs``; keep the epoch with the best dev MRR@10."""
    config.validate()
    resolved = resolve_model(config.base_model)
    seed_everything(config.seed)
    device_info = pick_device(config.device)
    model = SentenceTransformer(resolved.location, device=str(device_info.device))
    model.max_seq_length = config.max_seq_length
    encode = sentence_encoder(model, config.eval_batch_size)
    rows = _training_rows(config, train_pairs, encode)
    plan = _batch_plan(rows, config)
    total_steps = sum(map(len, plan))
    log.info("training embedder %s on %s: %d pairs -> %d rows %s, %d steps over %d epoch(s)", config.base_model,
             device_info.name, len(train_pairs), len(rows), rows.column_names, total_steps, config.epochs)

    base_metrics = evaluate_embedder(encode, dev_pairs)
    log.info("dev before fine-tuning: %s", base_metrics)
    loss_fn = MultipleNegativesRankingLoss(model, scale=config.scale)
    optimizer = adamw(model, config.learning_rate, config.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(config.warmup_ratio * total_steps), total_steps)
    text_columns = [i for i, name in enumerate(rows.column_names) if name != "label"]

    best = KeepBest(PRIMARY_METRIC, config.patience, config.epochs, initial=base_metrics)
    history: list[dict] = []
    step_losses: list[float] = []
    started = time.monotonic()
    for epoch, batches in enumerate(plan, start=1):
        model.train()
        epoch_losses = []
        for batch in tqdm(batches, desc=f"embedder epoch {epoch}/{config.epochs}", disable=not config.progress,
                          leave=False):
            # one feature dict per text column: [queries, positives(, negatives)], each (batch, tokens)
            features = [batch_to_device(model.preprocess([rows.rows[i][c] for i in batch]), device_info.device)
                        for c in text_columns]
            with device_info.autocast():
                loss = loss_fn(features, None)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step_losses.append(float(loss.item()))
            epoch_losses.append(step_losses[-1])
        dev = evaluate_embedder(encode, dev_pairs)
        elapsed = time.monotonic() - started
        history.append({"epoch": epoch, "train_loss": float(np.mean(epoch_losses)), "steps": len(batches),
                        "seconds": round(elapsed, 1), **{f"dev_{k}": v for k, v in dev.items()}})
        log.info("epoch %d: loss %.4f, dev %s (%.0f s)", epoch, history[-1]["train_loss"], dev, elapsed)
        if best.update(epoch, dev, model):
            break
    best.restore(model)
    model.eval()
    return TrainedModel(model=model, task="embedder", config=config,
                        metrics={"dev": best.best_metrics, "dev_base": base_metrics}, history=history,
                        step_losses=step_losses, best_epoch=best.best_epoch, train_seconds=time.monotonic() - started)


def save_embedder(model: SentenceTransformer, path: str | Path) -> None:
    """Write ``model`` into the folder ``path`` (safetensors weights, config, tokenizer)."""
    save_sentence_model(model, path)
