"""``make bench-bot``: the support bot on BANKING77 (protocol in ../shared/BENCHMARKS.md) -> var/bench/bot.json.

Parts (``--parts``, each merged into the figures file as it finishes, so a partial run keeps what ran):

* ``retrieval``: FAQ retrieval over the shipped knowledge base with BANKING77 test utterances as
  queries. Hit@1 = the top document answers the query's intent; Recall@5; MRR@10. Methods: BM25
  (rank-bm25), the base embedder, the embedder fine-tuned on train-split utterances (registered as
  ``kb-embedder``), and fine-tuned + the cross-encoder re-ranker (``kb-reranker``) on its top 3
  (``--rerank-top``, as the bot does; ranks 4-10 keep the embedder's order).
  All retrieve from the same entries the bot indexes (passages + example questions), scored per
  document by its best entry. The answer/clarify thresholds are tuned on dev and recorded for the
  production models in the bot's tuned-thresholds file (apps/customer_service/tuning.py).
  Intent fusion (``finetuned_rerank_intent``, and ``finetuned_intent`` without re-ranking): the
  production ``intent-banking77`` classifier's probabilities (``--intent-model``; skipped with a log
  line when there is none) fused as the bot's Retriever does: candidates = the top ``--rerank-top``
  documents + the documents of the top 3 intents (p >= 0.05), score + ``w * p(document's intent)``,
  ``w`` picked on dev (``--intent-weight``); its weight and fused thresholds are recorded too.
* ``intents``: test accuracy of core's classifier alone (``intent-banking77``, trained by
  ``make bench-quality``, or here with ``--train-classifier``) and through the running Rasa server
  (``/model/parse``) with that classifier behind ``CoreIntentClassifier``; reply latency p50/p95
  through the REST webhook for answered questions, the action server doing retrieval. The
  FallbackClassifier threshold is tuned on dev for that classifier and recorded first, so the Rasa
  server measured here already runs with it.
* ``diet``: Rasa's own DIET pipeline trained on the same train split (``--diet-epochs``), test accuracy.
* ``scope``: out-of-scope understanding. The scope model (``apps/customer_service/scope.py``) is
  trained as ``python -m apps.customer_service scope train`` does (BANKING77 train as in-scope
  examples; BANKING77 dev and ``clinc150_oos/oos_train.csv`` for calibration and thresholds), then
  reported on ``clinc150_oos/oos_val.csv`` and the BANKING77 test split: first the model alone
  (``scope_offline``), then through the running Rasa server and action server, every message a
  new conversation (``oos``, ``in_scope``, ``handoff_tickets_per_1000_oos``). OOS recall = share
  declined or asked to rephrase; precision = of all messages declined or asked to rephrase (OOS
  validation + BANKING77 test), the share that are out of scope. Intent model: ``--intent-model``,
  else the registry's production ``intent-banking77``, else retrieval intents (said in the figures).

    python -m benchmarks.bot                                   # everything
    python -m benchmarks.bot --parts retrieval --limit 300     # quick look on a test subsample
    python -m benchmarks.bot --parts retrieval --base-only     # BM25 + base embedder only: no training, ~1 min
    python -m benchmarks.bot --parts retrieval --base-only --kb OTHER_KB   # the same for another knowledge base

Training sizes: the defaults (embedder 4000 train utterances, 1 epoch; re-ranker 400 utterances x
(positive + 3 mined negatives), 1 epoch; dev 500) keep the retrieval part near 20-25 minutes with
one torch thread on a shared 2-core machine; most of the rest is the re-ranker scoring 3
candidates for each of the 3080 test and 500 dev queries. More data: ``--train-limit 0``
(all), ``--reranker-train-limit``, ``--embedder-epochs``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import yaml

from apps.customer_service.chunking import chunk_documents
from apps.customer_service.kb_index import KbIndex, build_kb_index
from apps.customer_service.knowledge_base import load_knowledge_base
from apps.customer_service.settings import APP_DIR, EMBEDDER_NAME, INTENT_NAME, RERANKER_NAME
from apps.customer_service.tuning import (
    fusion_entry,
    record_intent_fallback,
    record_retrieval,
    same_model,
    tuned_file,
)
from benchmarks import datasets
from benchmarks.quality import machine
from core.artifacts import data_record
from core.data.pairs import make_pairs
from core.ranking_metrics import ranking_metrics
from core.registry import ModelNotFoundError, Registry

log = logging.getLogger("benchmarks.bot")
OUTPUT = datasets.REPO_ROOT / "var" / "bench" / "bot.json"
PARTS = ("retrieval", "intents", "diet", "scope")
RERANK_WEIGHTS = (1.0, 0.75, 0.5, 0.25)  # re-ranker shares tried on dev (the rest of the score: cosine)
INTENT_WEIGHTS = (0.25, 0.5, 1.0, 2.0, 4.0)  # intent fusion weights tried on dev
TOKEN = re.compile(r"\w+")
OOS_VALIDATION = "clinc150_oos/oos_val.csv"  # reported on only (scope part)


# ---------------------------------------------------------------------------------------------- retrieval
def doc_scores(index: KbIndex, query_vectors: np.ndarray, doc_ids: list[str]) -> np.ndarray:
    """(queries, documents) best-entry cosine per document, through the bot's own FAISS search."""
    position = {doc: i for i, doc in enumerate(doc_ids)}
    scores = np.full((len(query_vectors), len(doc_ids)), -np.inf, dtype=np.float32)
    for row, hits in enumerate(index.search(query_vectors, len(index.chunks))):
        for chunk, score in hits:
            col = position[chunk.doc_id]
            scores[row, col] = max(scores[row, col], score)
    return scores


def bm25_scores(documents, queries: list[str], doc_ids: list[str]) -> np.ndarray:
    from rank_bm25 import BM25Okapi

    entries, owners = [], []
    for chunk in chunk_documents(documents):
        entries.append(chunk.indexed_text)
        owners.append(doc_ids.index(chunk.doc_id))
    for doc in documents:
        for question in doc.questions:
            entries.append(question)
            owners.append(doc_ids.index(doc.doc_id))
    bm25 = BM25Okapi([TOKEN.findall(text.lower()) for text in entries])
    owners = np.asarray(owners)
    scores = np.full((len(queries), len(doc_ids)), -np.inf, dtype=np.float32)
    for row, query in enumerate(queries):
        entry_scores = bm25.get_scores(TOKEN.findall(query.lower()))
        np.maximum.at(scores[row], owners, entry_scores.astype(np.float32))
    return scores


def metrics(scores: np.ndarray, relevant: list[set[int]]) -> dict:
    # shuffle-free ties are fine here: documents are in file order, unrelated to the queries' intents
    found = ranking_metrics(scores, relevant, recall_at=(1, 5), mrr_at=10)
    return {"hit1": round(found["recall@1"], 4), "recall5": round(found["recall@5"], 4),
            "mrr10": round(found["mrr@10"], 4), "queries": found["queries"]}


def rerank_texts(documents) -> dict[int, str]:
    """Each document as the cross-encoder reads it: title, then the body on one line."""
    return {i: f"{doc.title}. {' '.join(doc.body.split())}" for i, doc in enumerate(documents)}


def rerank_candidates(reranker, documents, queries: list[str], first: np.ndarray,
                      top: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """The cross-encoder's scores of each query's ``top`` documents by ``first``.

    Returns (order, scores), both (queries, top): the candidates' document indices and their scores.
    """
    text = rerank_texts(documents)
    order = np.argsort(-first, axis=1, kind="stable")[:, :top]  # (queries, top)
    pairs = [(q, text[int(d)]) for q, row in zip(queries, order, strict=True) for d in row]
    flat = reranker.model.predict(pairs, batch_size=64, show_progress_bar=False, convert_to_numpy=True)
    return order, np.asarray(flat, dtype=np.float32).reshape(len(queries), order.shape[1])


def fuse(first: np.ndarray, order: np.ndarray, rerank: np.ndarray, weight: float) -> np.ndarray:
    """Re-ranked scores: candidates get ``weight * rerank + (1 - weight) * first`` (as the bot's Retriever
    does); the other documents keep their order below every candidate."""
    scores = first - 1e3
    rows = np.arange(len(first))[:, None]
    scores[rows, order] = weight * rerank + (1 - weight) * first[rows, order]
    return scores


def pick_rerank_weight(first: np.ndarray, order: np.ndarray, rerank: np.ndarray, relevant: list[set[int]],
                       weights: tuple[float, ...]) -> tuple[float, dict]:
    """The re-ranker's share with the best dev (Hit@1, MRR@10); ties go to the larger share."""
    table = {w: metrics(fuse(first, order, rerank, w), relevant) for w in weights}
    best = max(sorted(table, reverse=True), key=lambda w: (table[w]["hit1"], table[w]["mrr10"]))
    return best, {str(w): {"hit1": m["hit1"], "mrr10": m["mrr10"]} for w, m in table.items()}


def intent_doc_probs(probabilities: np.ndarray, classes: list[str], documents) -> np.ndarray:
    """(queries, documents): the classifier's probability of each document's intent (0 for untagged pages)."""
    column = {name: i for i, name in enumerate(classes)}
    result = np.zeros((len(probabilities), len(documents)), dtype=np.float32)
    for d, doc in enumerate(documents):
        if doc.intent in column:
            result[:, d] = probabilities[:, column[doc.intent]]
    return result


def intent_candidates(doc_probs: np.ndarray, documents, top: int, floor: float) -> np.ndarray:
    """(queries, documents) bool: the documents of each query's ``top`` most probable intents with p >= ``floor``.

    As the bot's Retriever adds them (``RetrievalConfig.intent_candidates`` / ``intent_floor``).
    """
    intents = sorted({doc.intent for doc in documents if doc.intent})
    members = {name: [d for d, doc in enumerate(documents) if doc.intent == name] for name in intents}
    per_intent = np.stack([doc_probs[:, members[name][0]] for name in intents], axis=1)  # (queries, intents)
    mask = np.zeros(doc_probs.shape, dtype=bool)
    for row, probs in enumerate(per_intent):
        for i in np.argsort(-probs, kind="stable")[:top]:
            if probs[i] >= floor:
                mask[row, members[intents[i]]] = True
    return mask


def top_candidates(first: np.ndarray, top: int) -> np.ndarray:
    """(queries, documents) bool: each query's ``top`` documents by ``first``."""
    mask = np.zeros(first.shape, dtype=bool)
    np.put_along_axis(mask, np.argsort(-first, axis=1, kind="stable")[:, :top], True, axis=1)
    return mask


def rerank_matrix(reranker, documents, queries: list[str], mask: np.ndarray, order: np.ndarray | None = None,
                  known: np.ndarray | None = None) -> np.ndarray:
    """(queries, documents) cross-encoder scores of the pairs in ``mask`` (NaN elsewhere); pairs already
    scored by :func:`rerank_candidates` (``order``, ``known``) are reused, only the rest are scored."""
    scores = np.full(mask.shape, np.nan, dtype=np.float32)
    if order is not None:
        np.put_along_axis(scores, order, known, axis=1)
    todo = np.argwhere(mask & np.isnan(scores))
    if len(todo):
        text = rerank_texts(documents)
        pairs = [(queries[q], text[int(d)]) for q, d in todo]
        flat = reranker.model.predict(pairs, batch_size=64, show_progress_bar=False, convert_to_numpy=True)
        scores[todo[:, 0], todo[:, 1]] = np.asarray(flat, dtype=np.float32)
    return scores


def fuse_intents(first: np.ndarray, candidates: np.ndarray, doc_probs: np.ndarray, intent_weight: float,
                 rerank: np.ndarray | None = None, rerank_weight: float = 1.0) -> np.ndarray:
    """Intent-fused scores, as the bot's Retriever computes them: each candidate gets its score (the re-ranker
    blended with cosine when ``rerank`` is given, else cosine) ``+ intent_weight * p(its intent)``; the
    other documents keep their order below every candidate."""
    base = first if rerank is None else rerank_weight * rerank + (1 - rerank_weight) * first
    fused = first - 1e3
    fused[candidates] = base[candidates] + intent_weight * doc_probs[candidates]
    return fused


def pick_intent_weight(inputs: tuple, rerank_weight: float, relevant: list[set[int]],
                       weights: tuple[float, ...]) -> tuple[float, dict]:
    """The intent weight with the best dev (Hit@1, MRR@10); ties go to the smaller weight.

    ``inputs``: :func:`fuse_intents`'s (first, candidates, doc_probs, rerank) for the dev queries.
    """
    first, candidates, doc_probs, rerank = inputs
    table = {w: metrics(fuse_intents(first, candidates, doc_probs, w, rerank, rerank_weight), relevant)
             for w in weights}
    best = max(sorted(table), key=lambda w: (table[w]["hit1"], table[w]["mrr10"]))
    return best, {str(w): {"hit1": m["hit1"], "mrr10": m["mrr10"]} for w, m in table.items()}


def suggest_thresholds(best: np.ndarray, correct: np.ndarray, answer_precision: float = 0.95,
                       clarify_precision: float = 0.80) -> dict:
    """Lowest score thresholds whose answered share is right at least ``*_precision`` of the time (on dev)."""
    result = {}
    for name, target in (("answer", answer_precision), ("clarify", clarify_precision)):
        chosen = None
        for threshold in np.unique(np.round(best, 3)):
            kept = best >= threshold
            if kept.any() and correct[kept].mean() >= target:
                chosen = float(threshold)
                break
        result[name] = chosen
        result[f"{name}_coverage"] = round(float((best >= chosen).mean()), 4) if chosen is not None else 0.0
    return result


def kb_pairs(split, passage: dict[str, str], limit: int | None, name: str, seed: int = 13):
    """(utterance, its intent's KB passage) pairs with labels; a seeded subsample of ``limit`` utterances."""
    rows = list(zip(split.texts, split.labels, strict=True))
    if limit and len(rows) > limit:
        rows = random.Random(seed).sample(rows, limit)
    return make_pairs([t for t, _ in rows], [passage[y] for _, y in rows], labels=[y for _, y in rows], source=name)


def train_kb_models(args, splits, documents, registry: Registry) -> tuple[Path, Path | None, dict]:
    """Fine-tune the embedder (and the re-ranker) on train utterances -> their KB passage; register both.

    With ``--reuse-embedder`` the latest registered embedder is kept and only the re-ranker trains.
    Returns the two artifact paths and what the training used (pairs, seconds).
    """
    from core.finetune.embedder import EmbedderTrainingConfig, train_embedder
    from core.finetune.reranker import RerankerTrainingConfig, train_reranker

    passage = {doc.intent: f"{doc.title}. {' '.join(doc.body.split())}" for doc in documents if doc.intent}
    train_file = datasets.datasets_dir() / "banking77" / "train.csv"
    data = [data_record(train_file, "train", len(splits["train"])), data_record(train_file, "dev", len(splits["dev"]))]
    used: dict = {}
    if args.reuse_embedder:
        embedder_path = registry.path(EMBEDDER_NAME, "latest")
        used["embedder"] = f"reused {embedder_path}"
    else:
        embedder_config = EmbedderTrainingConfig(epochs=args.embedder_epochs, batch_size=32,
                                                 learning_rate=args.embedder_lr, max_seq_length=args.max_seq_length,
                                                 progress=args.progress)
        train_pairs = kb_pairs(splits["train"], passage, args.train_limit, "banking77/train")
        trained = train_embedder(embedder_config, train_pairs,
                                 kb_pairs(splits["dev"], passage, args.dev_limit, "banking77/dev"))
        card = trained.card(EMBEDDER_NAME, data,
                            pairs="BANKING77 train utterance -> the knowledge-base passage of its intent")
        embedder_path = registry.save(EMBEDDER_NAME, trained.save, card)
        used["embedder"] = {"train_pairs": len(train_pairs), "epochs": args.embedder_epochs,
                            "best_epoch": trained.best_epoch, "seconds": round(trained.train_seconds, 1)}
        log.info("embedder: %s (%s)", embedder_path, used["embedder"])
    if args.reranker_epochs == 0:
        return embedder_path, None, used
    base = str(embedder_path) if args.reranker_base == "finetuned" else "all-MiniLM-L6-v2"
    reranker_config = RerankerTrainingConfig(base_model=base, mining_model=str(embedder_path),
                                             epochs=args.reranker_epochs, negatives_per_query=3,
                                             max_seq_length=args.reranker_max_seq_length, progress=args.progress)
    train_pairs = kb_pairs(splits["train"], passage, args.reranker_train_limit, "banking77/train", seed=14)
    trained = train_reranker(reranker_config, train_pairs,
                             kb_pairs(splits["dev"], passage, min(args.dev_limit or 200, 200), "banking77/dev"))
    card = trained.card(RERANKER_NAME, data, mining_model=str(embedder_path), base=base)
    reranker_path = registry.save(RERANKER_NAME, trained.save, card)
    used["reranker"] = {"train_queries": len(train_pairs), "rows": 4 * len(train_pairs), "base": base,
                        "epochs": args.reranker_epochs, "best_epoch": trained.best_epoch,
                        "seconds": round(trained.train_seconds, 1)}
    log.info("re-ranker: %s (%s)", reranker_path, used["reranker"])
    return embedder_path, reranker_path, used


def _retrieval_inputs(args, splits):
    """The knowledge base's documents and ids, the test queries, and each query's relevant documents."""
    documents = load_knowledge_base(args.kb)
    doc_ids = [doc.doc_id for doc in documents]
    test = subsample(splits["test"], args.limit)
    relevant = [{i for i, doc in enumerate(documents) if doc.intent == label} for label in test.labels]
    return documents, doc_ids, test, relevant


def run_base_retrieval(args, splits) -> dict:
    """``--base-only``: the rows that need no training (BM25, the base embedder), in a minute or two.

    A quick check after a knowledge-base edit; written under ``retrieval_base`` so it never mixes
    with the rows of a full run (``retrieval``), which were measured with their own knowledge base.
    """
    from core.inference.embedder import Embedder

    documents, doc_ids, test, relevant = _retrieval_inputs(args, splits)
    started = time.monotonic()
    results = {"bm25": metrics(bm25_scores(documents, test.texts, doc_ids), relevant)}
    log.info("bm25: %s", results["bm25"])
    with tempfile.TemporaryDirectory() as tmp:
        embedder = Embedder.load("all-MiniLM-L6-v2")
        build_kb_index(documents, embedder.encode, Path(tmp) / "base", "all-MiniLM-L6-v2")
        results["base"] = metrics(doc_scores(KbIndex.load(Path(tmp) / "base"), embedder.encode(test.texts), doc_ids),
                                  relevant)
    log.info("base: %s", results["base"])
    return {"retrieval_base": results, "retrieval_base_setup": {
        "kb": str(args.kb), "documents": len(documents), "questions": sum(len(doc.questions) for doc in documents),
        "test_queries": len(test), "seconds": round(time.monotonic() - started, 1)}}


def run_retrieval(args, splits, registry: Registry) -> dict:
    from core.inference.embedder import Embedder
    from core.inference.reranker import Reranker

    if args.base_only:
        return run_base_retrieval(args, splits)
    documents, doc_ids, test, relevant = _retrieval_inputs(args, splits)
    started = time.monotonic()
    results = {"bm25": metrics(bm25_scores(documents, test.texts, doc_ids), relevant)}
    log.info("bm25: %s", results["bm25"])

    intent_path = retrieval_intent_model(args, registry)  # checked before any training
    used: dict = {"reused": True}
    if args.reuse_models:
        embedder_path, reranker_path = registry.path(EMBEDDER_NAME, "latest"), None
        if args.reranker_epochs > 0:
            try:
                reranker_path = registry.path(RERANKER_NAME, "latest")
            except ModelNotFoundError:
                log.warning("no %s in the registry: evaluating without a re-ranker", RERANKER_NAME)
    else:
        embedder_path, reranker_path, used = train_kb_models(args, splits, documents, registry)
    dev = subsample(splits["dev"], args.dev_limit)
    final_scores, dev_scores = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, reference in (("base", "all-MiniLM-L6-v2"), ("finetuned", str(embedder_path))):
            embedder = Embedder.load(reference)
            build_kb_index(documents, embedder.encode, Path(tmp) / name, reference)
            index = KbIndex.load(Path(tmp) / name)
            final_scores[name] = doc_scores(index, embedder.encode(test.texts), doc_ids)
            dev_scores[name] = doc_scores(index, embedder.encode(dev.texts), doc_ids)
            results[name] = metrics(final_scores[name], relevant)
            log.info("%s: %s", name, results[name])
    dev_relevant = [{i for i, doc in enumerate(documents) if doc.intent == label} for label in dev.labels]
    weight, weight_table = None, None
    dev_order = dev_rerank = order = rerank = None
    if reranker_path is not None:
        reranker = Reranker.load(reranker_path)
        dev_order, dev_rerank = rerank_candidates(reranker, documents, dev.texts, dev_scores["finetuned"],
                                                  args.rerank_top)
        weights = (args.rerank_weight,) if args.rerank_weight is not None else RERANK_WEIGHTS
        weight, weight_table = pick_rerank_weight(dev_scores["finetuned"], dev_order, dev_rerank, dev_relevant,
                                                  weights)
        log.info("re-ranker share %s (dev: %s)", weight, weight_table)
        dev_scores["finetuned_rerank"] = fuse(dev_scores["finetuned"], dev_order, dev_rerank, weight)
        order, rerank = rerank_candidates(reranker, documents, test.texts, final_scores["finetuned"], args.rerank_top)
        final_scores["finetuned_rerank"] = fuse(final_scores["finetuned"], order, rerank, weight)
        results["finetuned_rerank"] = metrics(final_scores["finetuned_rerank"], relevant)
        log.info("finetuned_rerank: %s", results["finetuned_rerank"])
    fusion_setup = None
    if intent_path is not None:
        reranked = None if reranker_path is None else {"reranker": reranker, "weight": weight,
                                                        "dev": (dev_order, dev_rerank), "test": (order, rerank)}
        fusion_setup = run_intent_fusion(args, intent_path, documents, dev, test, dev_scores, final_scores,
                                         dev_relevant, reranked)
        for name in fusion_setup["methods"]:
            results[name] = metrics(final_scores[name], relevant)
            log.info("%s: %s", name, results[name])
    thresholds, dev_results = {}, {}
    for name, scores in dev_scores.items():
        top = scores.argmax(axis=1)
        correct = np.array([int(t) in wanted for t, wanted in zip(top, dev_relevant, strict=True)])
        thresholds[name] = suggest_thresholds(scores.max(axis=1), correct)
        dev_results[name] = metrics(scores, dev_relevant)
    promotions = promote_if_better(registry, dev_results, embedder_path, reranker_path)
    recorded = record_retrieval_thresholds(registry, thresholds, embedder_path, reranker_path, len(dev), weight,
                                           fusion_setup)
    return {"retrieval": results, "retrieval_dev": dev_results, "retrieval_dev_thresholds": thresholds,
            "retrieval_promotions": promotions, "retrieval_thresholds_recorded": recorded,
            "retrieval_setup": {"documents": len(documents), "test_queries": len(test), "dev_queries": len(dev),
                                "embedder": str(embedder_path), "reranker": str(reranker_path), "training": used,
                                "rerank_top": args.rerank_top, "rerank_weight": weight,
                                "rerank_weight_dev": weight_table, "intent_fusion": fusion_setup,
                                "max_seq_length": args.max_seq_length,
                                "seconds": round(time.monotonic() - started, 1)}}


def retrieval_intent_model(args, registry: Registry) -> Path | None:
    """The intent classifier fused into retrieval: ``--intent-model``, else the registry's production
    ``intent-banking77``; None (fusion skipped, logged) when there is none."""
    if args.intent_model is not None:
        path = Path(args.intent_model)
        if not path.is_dir():
            raise SystemExit(f"--intent-model {path}: no such classifier folder; expected a core classifier artifact "
                             f"(e.g. var/models/{INTENT_NAME}/v1)")
        return path
    found = _production(registry, INTENT_NAME)
    if found is None:
        log.info("no production %s in the registry: skipping intent fusion (train it with `make bench-quality` or "
                 "pass --intent-model)", INTENT_NAME)
        return None
    return Path(found)


def run_intent_fusion(args, intent_path: Path, documents, dev, test, dev_scores: dict, final_scores: dict,
                      dev_relevant: list[set[int]], reranked: dict | None) -> dict:
    """Fuse the intent classifier's probabilities into the fine-tuned (+ re-ranked) scores, as the bot does.

    Candidates: the top ``--rerank-top`` documents by the fine-tuned embedder plus the documents of the
    classifier's top intents (``RetrievalConfig.intent_candidates`` / ``intent_floor``); the re-ranker
    also scores the added ones. The weight is picked on dev. Adds ``<method>_intent`` to both score dicts.
    """
    from apps.customer_service.retrieval import RetrievalConfig
    from core.inference.classifier import TextClassifier

    started = time.monotonic()
    config = RetrievalConfig()
    classifier = TextClassifier.load(intent_path)
    probs = {"dev": intent_doc_probs(classifier.predict(dev.texts).probabilities, classifier.classes, documents),
             "test": intent_doc_probs(classifier.predict(test.texts).probabilities, classifier.classes, documents)}
    del classifier
    texts = {"dev": dev.texts, "test": test.texts}
    scores = {"dev": dev_scores, "test": final_scores}
    weights = (args.intent_weight,) if args.intent_weight is not None else INTENT_WEIGHTS
    setup: dict = {"intent_model": str(intent_path), "intent_candidates": config.intent_candidates,
                   "intent_floor": config.intent_floor, "methods": {}}
    for method in ("finetuned", "finetuned_rerank"):
        if method == "finetuned_rerank" and reranked is None:
            continue
        inputs = {}
        for split in ("dev", "test"):
            first = scores[split]["finetuned"]
            mask = top_candidates(first, args.rerank_top) | intent_candidates(probs[split], documents,
                                                                              config.intent_candidates,
                                                                              config.intent_floor)
            rerank = None
            if method == "finetuned_rerank":
                order, known = reranked[split]
                rerank = rerank_matrix(reranked["reranker"], documents, texts[split], mask, order, known)
            inputs[split] = (first, mask, probs[split], rerank)
        rerank_weight = reranked["weight"] if method == "finetuned_rerank" else 1.0
        best, table = pick_intent_weight(inputs["dev"], rerank_weight, dev_relevant, weights)
        name = f"{method}_intent"
        for split, found in (("dev", dev_scores), ("test", final_scores)):
            first, mask, doc_probs, rerank = inputs[split]
            found[name] = fuse_intents(first, mask, doc_probs, best, rerank, rerank_weight)
        added = float((inputs["test"][1] & ~top_candidates(inputs["test"][0], args.rerank_top)).sum(axis=1).mean())
        setup["methods"][name] = {"intent_weight": best, "intent_weight_dev": table,
                                  "added_candidates_per_query": round(added, 2)}
        log.info("%s: intent weight %s (dev: %s)", name, best, table)
    setup["seconds"] = round(time.monotonic() - started, 1)
    return setup


def promote_if_better(registry: Registry, dev: dict, embedder_path: Path, reranker_path: Path | None) -> dict:
    """Make the new models the bot's production ones only when they help on dev (Hit@1, then MRR@10).

    The registry's own rule compares a model with its previous version; the bot also needs the
    fine-tuned embedder to beat the base one, and the re-ranker to beat no re-ranking.
    """
    def key(name: str) -> tuple[float, float]:
        return dev[name]["hit1"], dev[name]["mrr10"]

    decisions = {}
    if key("finetuned") >= key("base"):
        decisions[EMBEDDER_NAME] = registry.promote(EMBEDDER_NAME, embedder_path.name).reason
    else:
        decisions[EMBEDDER_NAME] = f"not promoted: dev {dev['finetuned']} below the base embedder {dev['base']}"
    if reranker_path is not None:
        if key("finetuned_rerank") >= key("finetuned"):
            decisions[RERANKER_NAME] = registry.promote(RERANKER_NAME, reranker_path.name).reason
        else:
            decisions[RERANKER_NAME] = (f"not promoted: dev {dev['finetuned_rerank']} below no re-ranking "
                                        f"{dev['finetuned']}")
    log.info("promotions: %s", decisions)
    return decisions


def record_retrieval_thresholds(registry: Registry, thresholds: dict, embedder_path: Path,
                                reranker_path: Path | None, dev_queries: int, weight: float | None,
                                fusion_setup: dict | None = None) -> dict | None:
    """Store the dev-tuned answer/clarify thresholds for the models the bot now runs in production.

    Only when the production embedder is the one just evaluated; with the re-ranker's scale when
    the production re-ranker is the one just evaluated, the cosine scale when there is none. The
    intent fusion of that method (weight, fused thresholds, classifier) rides along when it was run.
    """
    production = {name: _production(registry, name) for name in (EMBEDDER_NAME, RERANKER_NAME)}
    if not same_model(production[EMBEDDER_NAME], str(embedder_path)):
        log.info("thresholds not recorded: production %s is %s", EMBEDDER_NAME, production[EMBEDDER_NAME])
        return None
    if reranker_path is not None and same_model(production[RERANKER_NAME], str(reranker_path)):
        method, reranker = "finetuned_rerank", str(reranker_path)
    elif production[RERANKER_NAME] is None:
        method, reranker = "finetuned", None
    else:
        log.info("thresholds not recorded: production %s is %s", RERANKER_NAME, production[RERANKER_NAME])
        return None
    tuned = thresholds[method]
    if tuned["answer"] is None or tuned["clarify"] is None:
        log.warning("thresholds not recorded: no %s threshold reaches its dev precision: %s", method, tuned)
        return None
    fusion = None
    fused_method = f"{method}_intent"
    if fusion_setup is not None and fused_method in fusion_setup["methods"]:
        fused = thresholds[fused_method]
        if fused["answer"] is None or fused["clarify"] is None:
            log.warning("intent fusion not recorded: no %s threshold reaches its dev precision: %s", fused_method,
                        fused)
        else:
            fusion = fusion_entry(fusion_setup["intent_model"], fusion_setup["methods"][fused_method]["intent_weight"],
                                  answer=fused["answer"], clarify=min(fused["clarify"], fused["answer"]),
                                  method=fused_method, answer_coverage=fused["answer_coverage"],
                                  clarify_coverage=fused["clarify_coverage"],
                                  intent_candidates=fusion_setup["intent_candidates"],
                                  intent_floor=fusion_setup["intent_floor"])
    return record_retrieval(tuned_path(), str(embedder_path), reranker, answer=tuned["answer"],
                            clarify=min(tuned["clarify"], tuned["answer"]), fusion=fusion,
                            rerank_weight=weight if reranker else 1.0, method=method, dev_queries=dev_queries,
                            answer_coverage=tuned["answer_coverage"], clarify_coverage=tuned["clarify_coverage"],
                            source="make bench-bot (retrieval): lowest dev scores with >= 95% / 80% right")


def _production(registry: Registry, name: str) -> str | None:
    found = registry.production_path(name)
    return str(found) if found is not None else None


def tuned_path() -> Path:
    """The bot's tuned-thresholds file (``CS_TUNED_FILE``, else under ``TEXTML_VAR_DIR``), as the bot reads it."""
    return tuned_file(dict(os.environ), Path(os.environ.get("TEXTML_VAR_DIR", datasets.REPO_ROOT / "var")))


def subsample(split, limit: int | None):
    """A seeded random subsample of a split (all of it when ``limit`` is None)."""
    if not limit or len(split) <= limit:
        return split
    rows = random.Random(13).sample(list(zip(split.texts, split.labels, strict=True)), limit)
    return type(split)([t for t, _ in rows], [y for _, y in rows], f"{split.source}[{limit}]")


# ---------------------------------------------------------------------------------------------- intents
@contextmanager
def bot_servers(settings, env: dict[str, str], state: Path, token: str, timeout_s: float) -> Iterator[None]:
    """The action server (loading its models while Rasa trains) and the Rasa server, up until the block ends."""
    from apps.customer_service.launch import actions_ready, rasa_ready, start_service, stop_service, wait_until
    from apps.customer_service.rasa_project import train

    processes = []
    try:
        actions = start_service("actions", state / "actions.log", env)
        processes.append(actions)
        train(settings)
        rasa = start_service("rasa", state / "rasa.log", env)
        processes.append(rasa)
        wait_until(lambda: actions_ready(settings.actions_url), actions, state / "actions.log", "action server",
                   timeout_s)
        wait_until(lambda: rasa_ready(settings.rasa_url, state / "rasa.log", token), rasa, state / "rasa.log", "Rasa",
                   timeout_s)
        yield
    finally:
        for process in reversed(processes):
            stop_service(process)


def intent_model(args, splits, registry: Registry) -> Path:
    """The ``intent-banking77`` production classifier, or one trained here with ``--train-classifier``."""
    if not args.train_classifier:
        try:
            return registry.path(INTENT_NAME, "production")
        except ModelNotFoundError as error:
            raise SystemExit(f"{error}; run `make bench-quality` first or pass --train-classifier") from None
    from benchmarks.quality import run_task
    from core.finetune.classifier import ClassifierTrainingConfig

    base = ClassifierTrainingConfig(progress=args.progress, max_train_minutes=args.classifier_minutes)
    result = run_task("banking77", base, {"epochs": args.classifier_epochs}, registry)
    return Path(result["artifact"])


def run_intents(args, splits, registry: Registry) -> dict:
    import httpx

    from apps.customer_service.launch import free_port
    from apps.customer_service.settings import settings_from_env
    from apps.customer_service.tokens import rasa_token
    from core.inference.classifier import TextClassifier

    classifier_path = intent_model(args, splits, registry)
    test = subsample(splits["test"], args.limit)
    classifier = TextClassifier.load(classifier_path)
    started = time.monotonic()
    predicted = classifier.predict(test.texts).labels
    core_seconds = time.monotonic() - started
    accuracy_core = float(np.mean([p == y for p, y in zip(predicted, test.labels, strict=True)]))
    log.info("core classifier %s: accuracy %.4f", classifier_path, accuracy_core)
    dev = splits["dev"]
    dev_prediction = classifier.predict(dev.texts)
    dev_correct = np.array([p == y for p, y in zip(dev_prediction.labels, dev.labels, strict=True)])
    fallback = suggest_thresholds(dev_prediction.confidences, dev_correct)
    del classifier

    if fallback["answer"] is not None:
        record_intent_fallback(tuned_path(), str(classifier_path), fallback["answer"], precision=0.95,
                               coverage=fallback["answer_coverage"], dev_queries=len(dev),
                               source="make bench-bot (intents): lowest dev confidence with >= 95% correct")

    state = Path(tempfile.mkdtemp(prefix="bench-bot-"))
    env = {**os.environ, "CS_STATE_DIR": str(state), "CS_ACTIONS_PORT": str(free_port()),
           "CS_RASA_PORT": str(free_port()), "CS_INTENT_MODEL": str(classifier_path), "HF_HUB_OFFLINE": "1"}
    settings = settings_from_env(env)  # as the servers will read it: the tuned fallback threshold included
    token = rasa_token(settings)  # Rasa's API token (/status, /model/parse); the servers read the same file
    log.info("intent fallback threshold %s (%s)", settings.intent_fallback,
             settings.threshold_sources["intent_fallback"])
    with bot_servers(settings, env, state, token, timeout_s=600):  # the action server ingests with its embedder
        client = httpx.Client(timeout=60)
        names, fallbacks = [], 0
        for text in test.texts:
            parsed = client.post(f"{settings.rasa_url}/model/parse", params={"token": token},
                                 json={"text": text}).json()
            ranking = [r["name"] for r in parsed.get("intent_ranking", []) if r["name"] != "nlu_fallback"]
            fallbacks += parsed["intent"]["name"] == "nlu_fallback"
            names.append(ranking[0] if ranking else parsed["intent"]["name"])
        accuracy_rasa = float(np.mean([p == y for p, y in zip(names, test.labels, strict=True)]))
        log.info("through Rasa: accuracy %.4f (%d fallbacks)", accuracy_rasa, fallbacks)
        latencies = []
        for i, text in enumerate(test.texts[: args.latency_queries]):
            sent = time.perf_counter()
            reply = client.post(f"{settings.rasa_url}/webhooks/rest/webhook",
                                json={"sender": f"bench-{i}", "message": text}).json()
            elapsed = (time.perf_counter() - sent) * 1000
            if any(m.get("custom", {}).get("kb", {}).get("decision") == "answer" for m in reply):
                latencies.append(elapsed)
    return {"intent_accuracy_core": round(accuracy_core, 4), "intent_accuracy_rasa": round(accuracy_rasa, 4),
            "intent_fallback_rate_rasa": round(fallbacks / len(test), 4),
            "fallback_threshold_dev": fallback, "intent_fallback_threshold_used": settings.intent_fallback,
            "intent_fallback_threshold_source": settings.threshold_sources["intent_fallback"],
            "intent_model": str(classifier_path),
            "core_predict_texts_per_s": round(len(test) / core_seconds, 1),
            "latency_p50_ms": round(float(np.percentile(latencies, 50)), 1) if latencies else None,
            "latency_p95_ms": round(float(np.percentile(latencies, 95)), 1) if latencies else None,
            "latency_answered": len(latencies), "latency_sent": min(len(test), args.latency_queries),
            "intent_test_queries": len(test)}


# ---------------------------------------------------------------------------------------------- scope
OUTCOMES = ("declined", "rephrase", "clarify", "answer", "handoff", "form", "other")


def outcome(messages: list[dict], form_start: str) -> str:
    """What the bot did with one message, from its REST reply."""
    custom = {key: value for m in messages if isinstance(m.get("custom"), dict) for key, value in m["custom"].items()}
    text = "\n".join(str(m.get("text") or "") for m in messages)
    if "handoff" in custom:
        return "handoff"
    if form_start and form_start in text:
        return "form"
    decision = (custom.get("scope") or {}).get("decision")
    if decision in ("declined", "rephrase"):
        return decision
    if "rephrase" in custom:
        return "rephrase"
    kb = (custom.get("kb") or {}).get("decision")
    return {"answer": "answer", "clarify": "clarify"}.get(kb, "other")


def scope_intent_model(args, registry: Registry) -> str:
    if args.intent_model is not None:
        return str(args.intent_model)
    return _production(registry, INTENT_NAME) or "retrieval"


def run_scope(args, splits, registry: Registry) -> dict:
    import httpx

    from apps.customer_service.launch import free_port
    from apps.customer_service.scope_training import OOS_TRAIN, read_column, train_scope
    from apps.customer_service.settings import settings_from_env
    from apps.customer_service.tokens import rasa_token
    from core.inference.embedder import Embedder
    from core.metrics import expected_calibration_error

    started = time.monotonic()
    intent_model_used = scope_intent_model(args, registry)
    oos_val = read_column(datasets.datasets_dir() / OOS_VALIDATION, "text")
    test = subsample(splits["test"], args.limit)
    state = Path(tempfile.mkdtemp(prefix="bench-bot-scope-"))
    env = {**os.environ, "CS_STATE_DIR": str(state), "CS_ACTIONS_PORT": str(free_port()),
           "CS_RASA_PORT": str(free_port()), "CS_INTENT_MODEL": intent_model_used, "HF_HUB_OFFLINE": "1",
           "TEXTML_DATASETS_DIR": str(datasets.datasets_dir())}
    env.pop("CS_SCOPE_MODEL", None)
    settings = settings_from_env(env)
    model = train_scope(settings, log=log.info)
    log.info("scope model: %s", model.card.figures)

    # the model alone
    encode = Embedder.load(settings.embedder).encode
    p_oos = model.p_out(model.nearest(encode(oos_val)))
    p_in = model.p_out(model.nearest(encode(test.texts)))
    limits = model.card.thresholds
    probs = np.r_[p_oos, p_in]
    labels = np.r_[np.ones(len(p_oos)), np.zeros(len(p_in))]
    balanced = np.r_[np.ones(len(p_oos)), rng_subsample(len(p_in), len(p_oos))]  # as many in-scope as OOS rows
    offline = {
        "oos_recall": round(float(np.mean(p_oos >= limits.unsure)), 4),
        "oos_declined": round(float(np.mean(p_oos >= limits.decline)), 4),
        "in_scope_flagged": round(float(np.mean(p_in >= limits.unsure)), 4),
        "in_scope_declined": round(float(np.mean(p_in >= limits.decline)), 4),
        "brier_balanced": round(float(np.mean(((probs - labels) ** 2)[balanced > 0])), 4),
        "ece_balanced": round(expected_calibration_error(
            np.c_[1 - probs[balanced > 0], probs[balanced > 0]], labels[balanced > 0].astype(int)), 4),
        "thresholds": {"decline": limits.decline, "unsure": limits.unsure}, "dev": model.card.figures,
        "data": model.card.data, "reported_on": {OOS_VALIDATION: len(oos_val), test.source: len(test)},
        "embedder": settings.embedder, "not_used": OOS_TRAIN + " is calibration data, not reported on",
    }
    log.info("scope model alone: %s", {k: v for k, v in offline.items() if not isinstance(v, dict)})

    token = rasa_token(settings)
    domain = yaml.safe_load((APP_DIR / "rasa" / "domain" / "domain.yml").read_text(encoding="utf-8"))
    form_start = domain["responses"]["utter_lost_card_start"][0]["text"]
    from apps.customer_service.ingest import ingest

    ingest(settings.kb_dir, settings.index_dir, settings.embedder)
    with bot_servers(settings, env, state, token, timeout_s=900):
        client = httpx.Client(timeout=120)

        def talk(prefix: str, texts: list[str], parse: bool) -> tuple[list[str], list[str], list[float]]:
            outcomes, intents, latencies = [], [], []
            for i, text in enumerate(texts):
                sent = time.perf_counter()
                reply = client.post(f"{settings.rasa_url}/webhooks/rest/webhook",
                                    json={"sender": f"{prefix}-{i}", "message": text}).json()
                latencies.append((time.perf_counter() - sent) * 1000)
                outcomes.append(outcome(reply, form_start))
                if parse:
                    parsed = client.post(f"{settings.rasa_url}/model/parse", params={"token": token},
                                         json={"text": text}).json()
                    ranking = [r["name"] for r in parsed.get("intent_ranking", []) if r["name"] != "nlu_fallback"]
                    intents.append(ranking[0] if ranking else parsed["intent"]["name"])
                if (i + 1) % 250 == 0:
                    log.info("%s: %d/%d messages", prefix, i + 1, len(texts))
            return outcomes, intents, latencies

        oos_outcomes, _, _ = talk("oos", oos_val, parse=False)
        in_outcomes, in_intents, in_latencies = talk("in", test.texts, parse=True)
    tickets = sum(o == "handoff" for o in oos_outcomes)
    caught_oos = sum(o in ("declined", "rephrase") for o in oos_outcomes)
    caught_in = sum(o in ("declined", "rephrase") for o in in_outcomes)
    answered = [lat for o, lat in zip(in_outcomes, in_latencies, strict=True) if o == "answer"]
    figures = {
        "oos": {"recall": round(caught_oos / len(oos_val), 4),
                "precision": round(caught_oos / (caught_oos + caught_in), 4) if caught_oos + caught_in else None,
                "ticket_rate": round(tickets / len(oos_val), 4),
                "kb_answer_rate": round(sum(o == "answer" for o in oos_outcomes) / len(oos_val), 4),
                "form_rate": round(sum(o == "form" for o in oos_outcomes) / len(oos_val), 4),
                "outcomes": {name: oos_outcomes.count(name) for name in OUTCOMES}, "messages": len(oos_val),
                "not_caught": [{"text": text, "outcome": o} for text, o in zip(oos_val, oos_outcomes, strict=True)
                               if o not in ("declined", "rephrase")][:20]},
        "in_scope": {"intent_accuracy_rasa": round(float(np.mean([p == y for p, y in zip(
                         in_intents, test.labels, strict=True)])), 4),
                     "answered_share": round(sum(o == "answer" for o in in_outcomes) / len(test), 4),
                     "outcomes": {name: in_outcomes.count(name) for name in OUTCOMES}, "messages": len(test),
                     "latency_p50_ms": round(float(np.percentile(in_latencies, 50)), 1),
                     "latency_p95_ms": round(float(np.percentile(in_latencies, 95)), 1),
                     "answered_latency_p95_ms": round(float(np.percentile(answered, 95)), 1) if answered else None},
        "handoff_tickets_per_1000_oos": round(1000 * tickets / len(oos_val), 1),
        "scope_setup": {"intent_model": intent_model_used, "embedder": settings.embedder,
                        "reranker": settings.reranker, "scope_model": str(settings.scope_dir),
                        "seconds": round(time.monotonic() - started, 1)},
    }
    log.info("through Rasa: oos %s; in scope %s", figures["oos"], figures["in_scope"])
    return {"scope_offline": offline, **figures}


def rng_subsample(n: int, k: int, seed: int = 13) -> np.ndarray:
    """A 0/1 mask choosing ``k`` of ``n`` rows (all when ``k >= n``), seeded."""
    mask = np.zeros(n)
    mask[np.random.default_rng(seed).permutation(n)[: min(k, n)]] = 1
    return mask


# ---------------------------------------------------------------------------------------------- DIET
DIET_PARSE = """
import asyncio, json, sys
from rasa.core.agent import Agent
agent = Agent.load(sys.argv[1])
texts = json.load(open(sys.argv[2]))
async def main():
    return [(await agent.parse_message(t))["intent"]["name"] for t in texts]
json.dump(asyncio.run(main()), open(sys.argv[3], "w"))
"""


def run_diet(args, splits) -> dict:
    from infra.rasa import rasa_environment, rasa_executable

    test = subsample(splits["test"], args.limit)
    work = Path(tempfile.mkdtemp(prefix="bench-diet-"))
    (work / "data").mkdir()
    train = subsample(splits["train"], args.diet_train_limit)
    by_intent: dict[str, list[str]] = {}
    for text, label in zip(train.texts, train.labels, strict=True):
        by_intent.setdefault(label, []).append(text)
    nlu = {"version": "3.1", "nlu": [{"intent": k, "examples": "".join(f"- {' '.join(t.split())}\n" for t in v)}
                                     for k, v in sorted(by_intent.items())]}
    (work / "data" / "nlu.yml").write_text(yaml.safe_dump(nlu, sort_keys=False, allow_unicode=True))
    (work / "domain.yml").write_text(yaml.safe_dump({"version": "3.1", "intents": sorted(by_intent)}))
    config = {"recipe": "default.v1", "language": "en", "assistant_id": "bench-diet", "policies": [],
              "pipeline": [{"name": "WhitespaceTokenizer"}, {"name": "CountVectorsFeaturizer"},
                           {"name": "CountVectorsFeaturizer", "analyzer": "char_wb", "min_ngram": 1, "max_ngram": 4},
                           {"name": "DIETClassifier", "epochs": args.diet_epochs, "constrain_similarities": True,
                            "entity_recognition": False}]}
    (work / "config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = rasa_environment()
    started = time.monotonic()
    result = subprocess.run([str(rasa_executable()), "train", "nlu", "--fixed-model-name", "diet", "--out", "models"],
                            cwd=work, env=env, capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(f"DIET training failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    train_seconds = time.monotonic() - started
    (work / "texts.json").write_text(json.dumps(test.texts))
    python = str(rasa_executable().with_name("python"))
    result = subprocess.run([python, "-c", DIET_PARSE, str(work / "models" / "diet.tar.gz"), str(work / "texts.json"),
                             str(work / "predicted.json")], cwd=work, env=env, capture_output=True, text=True,
                            timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(f"DIET parsing failed:\n{result.stderr[-3000:]}")
    predicted = json.loads((work / "predicted.json").read_text())
    accuracy = float(np.mean([p == y for p, y in zip(predicted, test.labels, strict=True)]))
    log.info("DIET (%d epochs): accuracy %.4f", args.diet_epochs, accuracy)
    return {"intent_accuracy_diet": round(accuracy, 4), "diet_epochs": args.diet_epochs,
            "diet_train_rows": len(train), "diet_test_queries": len(test),
            "diet_train_seconds": round(train_seconds, 1)}


# ---------------------------------------------------------------------------------------------- main
def merge(path: Path, figures: dict, args) -> dict:
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update(figures)
    current["machine"] = machine()
    current.setdefault("runs", {})[next(iter(figures))] = {"args": {k: str(v) if isinstance(v, Path) else v
                                                                   for k, v in vars(args).items() if k != "output"},
                                                          "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current, indent=2))
    return current


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to run (default all)")
    parser.add_argument("--limit", type=int, help="test utterances to use (seeded subsample; default all 3080)")
    parser.add_argument("--dev-limit", type=int, default=500,
                        help="dev utterances for early stopping, the re-ranker share and thresholds (default 500)")
    parser.add_argument("--kb", type=Path, default=APP_DIR / "knowledge",
                        help="knowledge-base folder the retrieval part indexes (default the shipped one)")
    parser.add_argument("--base-only", action="store_true",
                        help="retrieval part: only the rows that need no training (BM25, base embedder), written "
                             "under retrieval_base; a quick check after a knowledge-base edit")
    parser.add_argument("--train-limit", type=int, default=4000,
                        help="train utterances for the embedder, seeded subsample (default 4000; 0 = all ~9000)")
    parser.add_argument("--embedder-epochs", type=int, default=1, help="embedder fine-tuning epochs (default 1)")
    parser.add_argument("--embedder-lr", type=float, default=5e-5, help="embedder learning rate (default 5e-5)")
    parser.add_argument("--reuse-embedder", action="store_true",
                        help="keep the latest registered kb-embedder and train only the re-ranker")
    parser.add_argument("--reranker-epochs", type=int, default=1, help="re-ranker epochs; 0 skips it (default 1)")
    parser.add_argument("--reranker-train-limit", type=int, default=400,
                        help="train utterances for the re-ranker, seeded subsample (default 400: 4 cross-encoder "
                             "rows each)")
    parser.add_argument("--reranker-base", choices=["base", "finetuned"], default="finetuned",
                        help="encoder the re-ranker starts from: base MiniLM or the fine-tuned embedder (default)")
    parser.add_argument("--reranker-max-seq-length", type=int, default=128,
                        help="re-ranker tokens per (query, passage) pair (default 128)")
    parser.add_argument("--rerank-top", type=int, default=3,
                        help="candidates the re-ranker re-scores (default 3, as the bot does: RetrievalConfig)")
    parser.add_argument("--rerank-weight", type=float,
                        help="re-ranker share of the final score, the rest the embedder's cosine (default: the best of "
                             f"{', '.join(map(str, RERANK_WEIGHTS))} on dev)")
    parser.add_argument("--intent-model", type=Path,
                        help="intent classifier fused into retrieval (default: the registry's production "
                             f"{INTENT_NAME}; without one the fusion is skipped)")
    parser.add_argument("--intent-weight", type=float,
                        help="weight of the intent probability in the fused score (default: the best of "
                             f"{', '.join(map(str, INTENT_WEIGHTS))} on dev)")
    parser.add_argument("--max-seq-length", type=int, default=64,
                        help="embedder tokens per text (default 64)")
    parser.add_argument("--reuse-models", action="store_true",
                        help="evaluate the latest registered kb-embedder/kb-reranker (none with --reranker-epochs 0) "
                             "instead of training")
    parser.add_argument("--train-classifier", action="store_true",
                        help="train intent-banking77 here instead of using the registry's production model")
    parser.add_argument("--classifier-epochs", type=int, default=1)
    parser.add_argument("--classifier-minutes", type=float, default=10.0, help="training budget for --train-classifier")
    parser.add_argument("--latency-queries", type=int, default=200, help="REST messages timed for latency")
    parser.add_argument("--diet-epochs", type=int, default=20, help="DIET training epochs (Rasa's default is 300)")
    parser.add_argument("--diet-train-limit", type=int,
                        help="train utterances for DIET, seeded subsample (default all ~9000)")
    parser.add_argument("--progress", action="store_true", help="progress bars while training")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its INFO lines show URLs: Rasa's token is in them
    splits = datasets.banking77()
    registry = Registry()
    for part in args.parts:
        if part == "retrieval":
            figures = run_retrieval(args, splits, registry)
        elif part == "intents":
            figures = run_intents(args, splits, registry)
        elif part == "scope":
            figures = run_scope(args, splits, registry)
        else:
            figures = run_diet(args, splits)
        merged = merge(args.output, figures, args)
    print(json.dumps(merged, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
