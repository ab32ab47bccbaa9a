"""Confidence thresholds tuned on dev by ``make bench-bot``, stored with the models they were tuned for.

A threshold only means something for the model whose scores it cuts: the intent fallback for one
classifier's calibrated probabilities, the answer/clarify thresholds for one embedder's cosine
(or one re-ranker's relevance). So the benchmark writes each tuned value together with the model
path(s) it measured into one JSON file (default ``var/customer_service/tuned.json``, or
``CS_TUNED_FILE``), and :func:`apply_tuned` uses an entry only when the bot runs exactly those
models; otherwise the built-in defaults stay, and ``BotSettings.threshold_sources`` says which
applies. The file lives outside ``CS_STATE_DIR`` so the benchmark's throw-away bot reads it too.

Format::

    {"intent_fallback": {"model": "/.../intent-banking77/v2", "threshold": 0.517, "precision": 0.95,
                         "coverage": 0.9655, "dev_queries": 1540, "tuned_at": "..."},
     "retrieval": {"embedder": "/.../kb-embedder/v1", "reranker": "/.../kb-reranker/v1" | null,
                   "answer": 0.61, "clarify": 0.12, "rerank_weight": 0.75, "answer_coverage": ...,
                   "clarify_coverage": ..., "dev_queries": 1000, "tuned_at": "...",
                   "fusion": {"intent_model": "/.../intent-banking77/v1", "intent_weight": 1.0,
                              "answer": 1.2, "clarify": 0.9, ...} | absent}}

``fusion`` (intent fusion, see ``retrieval.py``) rides on the retrieval entry: its weight and
thresholds are on the scale of that embedder (+ re-ranker) plus one intent classifier's
probabilities, so they apply only when all three models match.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from apps.customer_service.retrieval import RetrievalConfig, Thresholds
from core.atomic import atomic_write_text

if TYPE_CHECKING:
    from apps.customer_service.settings import BotSettings


class TunedFileError(ValueError):
    """The tuned-thresholds file cannot be read; the message names the file and the problem."""


def tuned_file(env: dict[str, str], var_dir: Path) -> Path:
    """Where the tuned thresholds live: ``CS_TUNED_FILE``, else ``<var>/customer_service/tuned.json``."""
    return Path(env.get("CS_TUNED_FILE") or var_dir / "customer_service" / "tuned.json")


def same_model(a: str | None, b: str | None) -> bool:
    """Whether two model references name the same model (folders compared after resolving)."""
    if a is None or b is None:
        return a is b
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


def read_tuned(path: Path) -> dict:
    """The file's entries ({} when it does not exist)."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise TunedFileError(f"{path}: not readable JSON ({error}); delete it or re-run `make bench-bot`") from None
    if not isinstance(data, dict):
        raise TunedFileError(f"{path}: holds a {type(data).__name__}; expected a JSON object")
    return data


def _write_entry(path: Path, key: str, entry: dict) -> dict:
    data = read_tuned(path)
    data[key] = {**entry, "tuned_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(path), json.dumps(data, indent=2) + "\n")
    return data[key]


def record_intent_fallback(path: Path, model: str, threshold: float, **details) -> dict:
    """Store the FallbackClassifier threshold tuned on dev for the classifier at ``model``."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"intent fallback threshold {threshold} is not a probability; expected 0..1")
    return _write_entry(path, "intent_fallback", {"model": str(model), "threshold": round(float(threshold), 4),
                                                  **details})


def record_retrieval(path: Path, embedder: str, reranker: str | None, answer: float, clarify: float,
                     rerank_weight: float = 1.0, fusion: dict | None = None, **details) -> dict:
    """Store the answer/clarify thresholds (and the re-ranker's share) tuned on dev for this embedder (+ re-ranker).

    ``fusion``: the intent fusion tuned on the same scores (:func:`fusion_entry`), or None.
    """
    Thresholds(answer=answer, clarify=clarify)  # validates clarify <= answer
    RetrievalConfig(rerank_weight=rerank_weight)  # validates the share
    extra = {} if fusion is None else {"fusion": fusion}
    return _write_entry(path, "retrieval", {"embedder": str(embedder), "reranker": None if reranker is None
                                            else str(reranker), "answer": round(float(answer), 4),
                                            "clarify": round(float(clarify), 4),
                                            "rerank_weight": round(float(rerank_weight), 4), **details, **extra})


def fusion_entry(intent_model: str, intent_weight: float, answer: float, clarify: float, **details) -> dict:
    """The intent fusion part of a retrieval entry: the classifier, its weight and the fused thresholds."""
    Thresholds(answer=answer, clarify=clarify)
    RetrievalConfig(intent_weight=intent_weight)  # validates the weight
    if intent_weight <= 0:
        raise ValueError(f"intent_weight={intent_weight}; a recorded fusion needs a weight > 0")
    return {"intent_model": str(intent_model), "intent_weight": round(float(intent_weight), 4),
            "answer": round(float(answer), 4), "clarify": round(float(clarify), 4), **details}


def apply_tuned(settings: BotSettings, path: Path) -> BotSettings:
    """``settings`` with the tuned thresholds whose models match the configured ones; sources say which."""
    data = read_tuned(path)
    sources = dict(settings.threshold_sources)
    fallback = data.get("intent_fallback")
    if isinstance(fallback, dict) and same_model(fallback.get("model"), settings.intent_model):
        settings = replace(settings, intent_fallback=float(fallback["threshold"]))
        sources["intent_fallback"] = f"tuned on dev ({path}, {fallback.get('tuned_at', '?')})"
    entry = data.get("retrieval")
    if (isinstance(entry, dict) and same_model(entry.get("embedder"), settings.embedder)
            and same_model(entry.get("reranker"), settings.reranker)):
        scale = "rerank" if settings.reranker else "cosine"
        tuned = Thresholds(answer=float(entry["answer"]), clarify=float(entry["clarify"]))
        weight = float(entry.get("rerank_weight", 1.0)) if settings.reranker else settings.retrieval.rerank_weight
        settings = replace(settings, retrieval=replace(settings.retrieval, rerank_weight=weight, **{scale: tuned}))
        sources["retrieval"] = f"tuned on dev ({path}, {entry.get('tuned_at', '?')})"
        fusion = entry.get("fusion")
        if isinstance(fusion, dict) and same_model(fusion.get("intent_model"), settings.intent_model):
            fused = Thresholds(answer=float(fusion["answer"]), clarify=float(fusion["clarify"]))
            settings = replace(settings, retrieval=replace(settings.retrieval, fused=fused,
                                                           intent_weight=float(fusion["intent_weight"])))
            sources["intent_fusion"] = (f"tuned on dev ({path}, {entry.get('tuned_at', '?')}) for "
                                        f"{fusion['intent_model']}")
    return replace(settings, threshold_sources=sources)


def import_bench_fallback(figures: Path, path: Path) -> dict:
    """Record the intent fallback threshold from a ``make bench-bot`` figures file (its ``intents`` part)."""
    figures = Path(figures)
    try:
        data = json.loads(figures.read_text(encoding="utf-8"))
        model, tuned = data["intent_model"], data["fallback_threshold_dev"]
        threshold = tuned["answer"]
    except (OSError, json.JSONDecodeError) as error:
        raise TunedFileError(f"{figures}: not a readable figures file ({error})") from None
    except (KeyError, TypeError):
        raise TunedFileError(f"{figures}: no intent_model / fallback_threshold_dev.answer; expected the output of "
                             "`python -m benchmarks.bot --parts intents`") from None
    if threshold is None:
        raise TunedFileError(f"{figures}: fallback_threshold_dev.answer is null (no threshold reached its precision)")
    measured_at = (data.get("runs") or {}).get("intent_accuracy_core", {}).get("at", "?")
    return record_intent_fallback(path, model, threshold, precision=0.95, coverage=tuned.get("answer_coverage"),
                                  source=f"imported from {figures} (bench-bot intents run at {measured_at})")
