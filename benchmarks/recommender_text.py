"""Text on MovieLens: the cached encoders, the optional behaviour fine-tune, and protocol B.

Protocol B (new items, ../shared/BENCHMARKS.md) has text as its only signal: a new item has no
interaction anywhere in training. Users are scored by the cosine of each new item's text vector
("title. Genres: a, b") to their history's: the mean of the whole history, and the last 10
items weighted 0.8^age. A random ranking (mean of 10 seeds) is the floor.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks import datasets
from benchmarks.movielens import NewItemUser, ProtocolA, ProtocolB, protocol_text
from benchmarks.recommender_eval import recall_and_ndcg

log = logging.getLogger("benchmarks.recommender")
BENCH_DIR = datasets.REPO_ROOT / "var" / "bench"
CACHE_DIR = BENCH_DIR / "cache"
REGISTRY_NAME = "recommender-embedder-movielens"


class CachedEncoder:
    """An encoder that remembers vectors by text (and on disk), so one catalog is embedded once per model."""

    def __init__(self, encoder, name: str) -> None:
        self.encoder, self.source, self.name = encoder, encoder.source, name
        self.memory: dict[str, np.ndarray] = {}

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def encode(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.memory]
        if missing:
            for text, vector in zip(missing, self.encoder.encode(missing), strict=True):
                self.memory[text] = vector
        return np.stack([self.memory[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def encode_cached(self, texts: list[str]) -> np.ndarray:
        digest = hashlib.sha256(("\n".join(texts) + self.name).encode()).hexdigest()[:16]
        path = CACHE_DIR / f"recommender-{digest}.npy"
        if path.is_file():
            vectors = np.load(path)
            self.memory.update(zip(texts, vectors, strict=True))
            return vectors
        started = time.monotonic()
        vectors = self.encode(texts)
        log.info("embedded %d texts with %s in %.0f s", len(texts), self.name, time.monotonic() - started)
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors)
        return vectors


# ---------------------------------------------------------------------------------------------- protocol B
def evaluate_b(data: ProtocolB, score: Callable[[NewItemUser], np.ndarray]) -> dict:
    """Recall@10 and NDCG@10 over the users; ``score(user)`` gives (len(new_items),) scores."""
    ids = np.array([m.id for m in data.new_items])
    rows = [recall_and_ndcg(ids[np.argsort(-score(u), kind="stable")[:10]].tolist(), u.targets) for u in data.users]
    recall, ndcg = (np.array(column) for column in zip(*rows, strict=True))
    return {"recall10": round(float(recall.mean()), 4), "ndcg10": round(float(ndcg.mean()), 4),
            "users": len(rows), "new_items": len(ids)}


def protocol_b(data: ProtocolB, encoders: dict[str, CachedEncoder], seed: int) -> dict:
    """``{random, <name>, <name>_recent ...}`` for one split."""
    out = {}
    runs = []
    for n in range(10):
        rng = np.random.default_rng(seed + n)
        runs.append(evaluate_b(data, lambda u, rng=rng: rng.random(len(data.new_items))))
    out["random"] = {key: round(float(np.mean([r[key] for r in runs])), 4) for key in ("recall10", "ndcg10")}
    out["random"]["seeds"] = 10
    history_ids = sorted(data.history_movies, key=int)
    history_texts = [protocol_text(data.history_movies[m]) for m in history_ids]
    new_texts = [protocol_text(m) for m in data.new_items]
    for name, encoder in encoders.items():
        vectors = encoder.encode_cached(history_texts + new_texts)
        at = {m: i for i, m in enumerate(history_ids)}
        items = vectors[len(history_ids):]

        def mean(user: NewItemUser, vectors=vectors, items=items, at=at) -> np.ndarray:
            profile = vectors[[at[m] for m in user.history]].mean(axis=0)
            return items @ (profile / np.linalg.norm(profile))

        def recent(user: NewItemUser, vectors=vectors, items=items, at=at) -> np.ndarray:
            keys = [at[m] for m in user.history[-10:]]
            profile = (vectors[keys] * (0.8 ** np.arange(len(keys))[::-1])[:, None]).sum(axis=0)
            return items @ (profile / np.linalg.norm(profile))

        out[name] = evaluate_b(data, mean)
        out[f"{name}_recent"] = evaluate_b(data, recent)
        log.info("protocol B %s %s: %s / recent %s", data.split, name, out[name], out[f"{name}_recent"])
    return out


# ---------------------------------------------------------------------------------------------- fine-tune (opt-in)
def history_pairs(data: ProtocolA, texts: list[str], limit: int, seed: int) -> tuple[list[str], list[str]]:
    """(item, next item) text pairs from train histories: things consumed one after the other."""
    pairs = [(texts[a], texts[b]) for s in data.users for a, b in zip(s.train[:-1], s.train[1:], strict=True)
             if texts[a] != texts[b]]
    rng = np.random.default_rng(seed)
    if len(pairs) > limit:
        pairs = [pairs[i] for i in rng.choice(len(pairs), size=limit, replace=False)]
    return [a for a, _ in pairs], [b for _, b in pairs]


def finetune(data: ProtocolA, texts: list[str], args: argparse.Namespace) -> tuple[str, dict]:
    """Fine-tune MiniLM on consecutive train pairs (dev pairs: last train item -> dev item, for early stopping)."""
    from core.artifacts import data_record
    from core.atomic import atomic_write_text
    from core.data.pairs import make_pairs
    from core.finetune.embedder import EmbedderTrainingConfig, train_embedder
    from core.registry import Registry

    queries, positives = history_pairs(data, texts, args.pairs, args.seed)
    dev = [(texts[s.train[-1]], texts[s.dev]) for s in data.users
           if len(s.train) and s.dev >= 0 and texts[s.train[-1]] != texts[s.dev]]
    train_pairs = make_pairs(queries, positives, source="movielens train histories")
    dev_pairs = make_pairs([q for q, _ in dev], [p for _, p in dev], source="movielens dev (last train -> dev)")
    config = EmbedderTrainingConfig(epochs=args.epochs, batch_size=args.batch_size, max_seq_length=48,
                                    learning_rate=args.learning_rate, seed=args.seed, progress=False)
    log.info("fine-tuning the embedder on %d train pairs (%d dev pairs)", len(train_pairs), len(dev_pairs))
    trained = train_embedder(config, train_pairs, dev_pairs)
    dev_file = BENCH_DIR / "recommender-dev-pairs.jsonl"
    atomic_write_text(dev_file, "".join(json.dumps({"query": q, "positive": p}) + "\n" for q, p in dev))
    card = trained.card(REGISTRY_NAME, data=[data_record(data.folder / "ratings.csv", "train"),
                                             data_record(dev_file, "dev")],
                        pairs=len(train_pairs), protocol="consecutive train items of MovieLens users")
    folder = Registry().save(REGISTRY_NAME, trained.save, card)
    return str(folder), {"dev": trained.metrics["dev"], "dev_base": trained.metrics["dev_base"],
                         "train_seconds": round(trained.train_seconds, 1), "pairs": len(train_pairs),
                         "artifact": str(folder)}


def tuned_encoder(folder: Path) -> CachedEncoder:
    """A fine-tuned embedder artifact, cached under a name that identifies this exact training run."""
    from apps.recommender.encoders import load_encoder
    from core.artifacts import read_card

    created = read_card(Path(folder)).created_at
    return CachedEncoder(load_encoder(str(folder)), f"{REGISTRY_NAME}:{Path(folder).name}@{created}")
