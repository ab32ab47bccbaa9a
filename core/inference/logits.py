"""Batched forward passes of a :class:`PooledClassifier`, shared by training (dev evaluation,
the linear probe) and serving; kept apart from the training loop so that serving does not
import accelerate and the optimiser stack."""

from __future__ import annotations

import random

import numpy as np
import torch

from core.batching import collate, length_batches
from core.classifier_model import PooledClassifier


@torch.no_grad()
def predict_logits(model: PooledClassifier, tokenizer, ids: list[list[int]], batch_size: int,
                   device: torch.device, autocast, features: bool = False) -> np.ndarray:
    """Logits (n, classes) — or pooled features (n, hidden) — in the input order."""
    model.eval()
    out = np.zeros((len(ids), model.encoder.config.hidden_size if features else len(model.labels)), np.float32)
    for index in length_batches([len(x) for x in ids], batch_size, random.Random(0), shuffle=False):
        batch = collate(tokenizer, ids, index, device)
        with autocast():
            values = model.embed(**batch) if features else model(**batch)
        out[index] = values.float().cpu().numpy()
    return out
