"""Length-bucketed batches and padding: the shared input pipeline of training and inference.

Sorting by token length before batching keeps padding (wasted compute on CPU) small; in
training, sorting happens within chunks of 50 batches and the batches are shuffled, so the
order stays random enough for SGD.
"""

from __future__ import annotations

import random

import torch


def length_batches(lengths: list[int], batch_size: int, rng: random.Random, shuffle: bool) -> list[list[int]]:
    """Index batches; when shuffling, sort within chunks of 50 batches so padding stays small."""
    order = list(range(len(lengths)))
    if not shuffle:
        order.sort(key=lambda i: lengths[i])
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(order)
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start:start + chunk], key=lambda i: lengths[i])
        batches.extend(part[i:i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def collate(tokenizer, ids: list[list[int]], index: list[int], device: torch.device) -> dict[str, torch.Tensor]:
    """The token ids at ``index``, padded into one batch on ``device``."""
    padded = tokenizer.pad({"input_ids": [ids[i] for i in index]}, return_tensors="pt")
    return {k: v.to(device) for k, v in padded.items()}
