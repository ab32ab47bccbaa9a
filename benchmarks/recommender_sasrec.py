"""RecBole's SASRec on protocol A's exact split and candidates.

RecBole's own pipeline would re-split the ratings and index every rated movie, including the
ones only held-out ratings mention; so the model class comes from RecBole 1.2.1 (its
``SASRec``, its CE loss, its default hyper-parameters read from its own ``SASRec.yaml``, its
trainer's defaults: Adam, learning rate 0.001, history length 50) and the data come from
:mod:`benchmarks.movielens`: the item vocabulary is the leak-free catalog (RecBole id = catalog
index + 1, 0 = padding) and training sees the *train* histories only.

Training objective: RecBole trains on every prefix of every history (its data augmentation),
about 100,000 sequences of 50 items per epoch here, which took more than 6 minutes of CPU for
one epoch on these 2 shared cores. The SASRec paper's own objective gives each position of a
50-item window its next item as the CE target, the same predictions from one pass per window (50x
fewer tokens): that is what :func:`train_windows` does, through the RecBole model's own modules
(:func:`all_positions` is ``SASRec.forward`` without the final gather). The model is scored on the
dev item every ``eval_every`` epochs; the best dev NDCG@10 is reported on test, through
:func:`evaluate_a` like every other method. The model stays in memory (no checkpoint to reload,
so no ``weights_only``). Batches of 32 windows (about 1,400 targets, RecBole's 2048 targets a step
being near that): on dev after 2 epochs, NDCG@10 0.0206 against 0.0175 with 128 windows a batch.

RecBole 1.2.1 predates NumPy 2: its modules use ``np.float_``, ``np.bool8`` and friends, which
:func:`import_recbole` restores before importing it (it also needs ``setuptools<81``).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.movielens import ProtocolA, UserSplit
from benchmarks.recommender_eval import evaluate_a

log = logging.getLogger("benchmarks.recommender")
MAX_LEN = 50
NUMPY_ALIASES = {"bool8": "bool_", "float_": "float64", "int_": "int64", "complex_": "complex128",
                 "unicode_": "str_", "object0": "object_", "long": "int64", "unicode": "str_"}


def import_recbole():
    """RecBole's SASRec class, after restoring the NumPy aliases RecBole 1.2.1 still uses."""
    for name, target in NUMPY_ALIASES.items():
        if not hasattr(np, name):
            setattr(np, name, getattr(np, target))
    from recbole.model.sequential_recommender.sasrec import SASRec

    return SASRec


def recbole_config(n_items: int, seed: int) -> dict:
    """RecBole's SASRec.yaml defaults plus the field names its sequential models read."""
    import recbole
    import yaml

    folder = Path(recbole.__file__).parent / "properties"
    config = yaml.safe_load((folder / "model" / "SASRec.yaml").read_text(encoding="utf-8"))
    for key, value in config.items():  # PyYAML reads "1e-12" as text; RecBole's own loader reads it as a number
        if isinstance(value, str):
            try:
                config[key] = float(value)
            except ValueError:
                pass
    config.update({"USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "LIST_SUFFIX": "_list",
                   "ITEM_LIST_LENGTH_FIELD": "item_length", "NEG_PREFIX": "neg_", "MAX_ITEM_LIST_LENGTH": MAX_LEN,
                   "device": "cpu", "seed": seed, "n_items": n_items})
    return config


class _Vocabulary:
    """What RecBole's model constructor asks of a dataset: the size of the item vocabulary."""

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items

    def num(self, field: str) -> int:
        return self.n_items


def left_aligned(sequences: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(n, MAX_LEN) RecBole item ids (catalog index + 1), the last MAX_LEN items first-aligned, and lengths."""
    out = np.zeros((len(sequences), MAX_LEN), np.int64)
    lengths = np.zeros(len(sequences), np.int64)
    for row, seq in enumerate(sequences):
        seq = seq[-MAX_LEN:]
        out[row, : len(seq)] = seq + 1
        lengths[row] = len(seq)
    return out, lengths


def train_windows(data: ProtocolA) -> tuple[np.ndarray, np.ndarray]:
    """(w, MAX_LEN) inputs and next-item targets (RecBole ids, 0 = padding) of 50-item windows of train histories."""
    inputs, targets = [], []
    for user in data.users:
        items = user.train + 1
        for end in range(len(items), 1, -MAX_LEN):
            start = max(0, end - MAX_LEN - 1)
            inputs.append(items[start:end - 1])
            targets.append(items[start + 1:end])
    x = np.zeros((len(inputs), MAX_LEN), np.int64)
    y = np.zeros((len(inputs), MAX_LEN), np.int64)
    for row, (a, b) in enumerate(zip(inputs, targets, strict=True)):
        x[row, : len(a)], y[row, : len(b)] = a, b
    return x, y


def all_positions(model, item_seq):
    """``SASRec.forward`` of RecBole 1.2.1 without the final gather: (B, L, H) outputs at every position."""
    import torch

    position_ids = torch.arange(item_seq.size(1), dtype=torch.long, device=item_seq.device)
    position_ids = position_ids.unsqueeze(0).expand_as(item_seq)
    input_emb = model.item_embedding(item_seq) + model.position_embedding(position_ids)
    input_emb = model.dropout(model.LayerNorm(input_emb))
    mask = model.get_attention_mask(item_seq)
    return model.trm_encoder(input_emb, mask, output_all_encoded_layers=True)[-1]


def sasrec(data: ProtocolA, seed: int, max_epochs: int = 40, eval_every: int = 2, patience: int = 3,
           batch_size: int = 32, learning_rate: float = 0.001, users: list[UserSplit] | None = None) -> dict:
    """Train on train, pick the epoch on dev NDCG@10, report test; ``{"test", "dev", "chosen", "epochs"}``."""
    try:
        sasrec_class = import_recbole()
    except ImportError as error:
        return {"error": f"recbole is not installed ({error}); run make bench-recommender-env"}
    import torch
    from recbole.data.interaction import Interaction

    torch.set_num_threads(int(os.environ.get("TEXTML_NUM_THREADS", "1")))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    config = recbole_config(data.n_items + 1, seed)
    model = sasrec_class(config, _Vocabulary(data.n_items + 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    x, y = train_windows(data)
    users = users if users is not None else data.users
    history, history_len = left_aligned([u.train for u in users])
    row = {u.user: n for n, u in enumerate(users)}
    log.info("SASRec (RecBole): %d windows, %d targets, %d items", len(x), int((y > 0).sum()), data.n_items)

    def scores() -> np.ndarray:
        """(users, n_items) scores from each user's train history (the same history for dev and test)."""
        model.eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(history), 256):
                batch = Interaction({"item_id_list": torch.from_numpy(history[start:start + 256]),
                                     "item_length": torch.from_numpy(history_len[start:start + 256])})
                out.append(model.full_sort_predict(batch)[:, 1:].numpy())
        return np.concatenate(out)

    epochs, best, waited, started = [], None, 0, time.monotonic()
    for epoch in range(1, max_epochs + 1):
        model.train()
        total, count = 0.0, 0
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch_size):
            take = order[start:start + batch_size]
            seq, target = torch.from_numpy(x[take]), torch.from_numpy(y[take])
            output = all_positions(model, seq)                               # (B, L, H)
            logits = output @ model.item_embedding.weight.T                  # (B, L, items + 1)
            keep = target > 0
            loss = torch.nn.functional.cross_entropy(logits[keep], target[keep])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, count = total + float(loss.detach()) * int(keep.sum()), count + int(keep.sum())
        if epoch % eval_every and epoch != max_epochs:
            continue
        table = scores()
        dev = evaluate_a(data, "dev", lambda u, table=table: table[row[u.user]], users)
        epochs.append({"epoch": epoch, "loss": round(total / count, 4), "dev_ndcg10": dev["ndcg10"],
                       "seconds": round(time.monotonic() - started, 1)})
        log.info("SASRec %s", epochs[-1])
        if best is None or dev["ndcg10"] > best["dev"]["ndcg10"]:
            best, waited = {"epoch": epoch, "dev": dev, "table": table}, 0
        else:
            waited += 1
            if waited >= patience:
                break
    table = best["table"]
    test = evaluate_a(data, "test", lambda u: table[row[u.user]], users)
    hyper = {k: config[k] for k in ("n_layers", "n_heads", "hidden_size", "inner_size", "hidden_dropout_prob",
                                    "attn_dropout_prob", "loss_type", "MAX_ITEM_LIST_LENGTH")}
    return {"test": test, "dev": best["dev"],
            "chosen": {"epoch": best["epoch"], **hyper, "batch_size": batch_size, "learning_rate": learning_rate,
                       "objective": "next item at every position of 50-item train windows (SASRec paper)"},
            "epochs": epochs, "windows": int(len(x))}
