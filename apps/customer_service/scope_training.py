"""Train the scope model (``scope.py``) from the shared datasets and the project's own files.

What it learns from:

* reference (in scope): BANKING77's train split (``core.data.splits``: train.csv rows outside the dev
  bucket), the knowledge base's example questions and the bot's small talk (``rasa/data/nlu.yml``
  without its ``out_of_scope`` examples): everything the bot is meant to handle;
* dev in scope: BANKING77's dev split; dev out of scope: ``clinc150_oos/oos_train.csv``.

``clinc150_oos/oos_val.csv`` and BANKING77's test file are never read here: they are for reporting
(``make bench-bot``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import yaml

from apps.customer_service.knowledge_base import load_knowledge_base
from apps.customer_service.scope import ScopeModel, fit_scope
from apps.customer_service.settings import APP_DIR, BotSettings
from core.data.splits import is_dev

BANKING77_TRAIN = "banking77/train.csv"
OOS_TRAIN = "clinc150_oos/oos_train.csv"
NLU_FILE = APP_DIR / "rasa" / "data" / "nlu.yml"
NOT_IN_SCOPE = {"out_of_scope"}


class ScopeDataError(FileNotFoundError):
    """The shared datasets are not where the settings say; the message says how to point at them."""


@dataclass(frozen=True)
class ScopeData:
    reference: list[str]
    dev_in: list[str]
    dev_out: list[str]
    sources: dict  # what each part was read from, and how many rows


def read_column(path: Path, column: str) -> list[str]:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        raise ScopeDataError(f"{path} is missing; set TEXTML_DATASETS_DIR to the folder that holds banking77/ and "
                             "clinc150_oos/ (default: ../shared/datasets beside the repository)") from None
    if rows and column not in rows[0]:
        raise ScopeDataError(f"{path} has no {column!r} column (columns: {', '.join(rows[0])})")
    return [row[column].strip() for row in rows if row[column].strip()]


def small_talk(nlu_file: Path = NLU_FILE) -> list[str]:
    """The bot's own small-talk examples (greetings, thanks, asking for a person, ...), not its out-of-scope ones."""
    data = yaml.safe_load(nlu_file.read_text(encoding="utf-8"))
    texts = []
    for block in data.get("nlu") or []:
        if block.get("intent") and block["intent"] not in NOT_IN_SCOPE:
            texts += [line[2:].strip() for line in block.get("examples", "").splitlines() if line.startswith("- ")]
    return texts


def load_scope_data(datasets_dir: Path, kb_dir: Path) -> ScopeData:
    banking = read_column(Path(datasets_dir) / BANKING77_TRAIN, "text")
    train = [t for t in banking if not is_dev(t)]
    dev = [t for t in banking if is_dev(t)]
    questions = sorted({q for doc in load_knowledge_base(kb_dir) for q in doc.questions})
    talk = small_talk()
    out = read_column(Path(datasets_dir) / OOS_TRAIN, "text")
    sources = {"reference": {BANKING77_TRAIN + " (train split)": len(train), "knowledge-base questions": len(questions),
                             "rasa/data/nlu.yml small talk": len(talk)},
               "dev_in": {BANKING77_TRAIN + " (dev split)": len(dev)}, "dev_out": {OOS_TRAIN: len(out)}}
    return ScopeData(train + questions + talk, dev, out, sources)


def train_scope(settings: BotSettings, in_budget: float = 0.03, decline_budget: float = 0.01,
                folder: Path | None = None, log=print) -> ScopeModel:
    """Fit the scope model with the bot's embedder and save it to ``folder`` (default ``settings.scope_dir``)."""
    from core.inference.embedder import Embedder

    folder = folder or settings.scope_dir
    if folder is None:
        raise ValueError("CS_SCOPE_MODEL=none turns the scope model off; unset it or name a folder to train into")
    data = load_scope_data(settings.datasets_dir, settings.kb_dir)
    log(f"training the scope model: {len(data.reference)} in-scope examples, calibrated on {len(data.dev_in)} "
        f"in-scope and {len(data.dev_out)} out-of-scope dev examples, embedder {settings.embedder} (a minute or two)")
    model = fit_scope(Embedder.load(settings.embedder).encode, settings.embedder, data.reference, data.dev_in,
                      data.dev_out, in_budget=in_budget, decline_budget=decline_budget, data=data.sources)
    model.save(folder)
    return model
