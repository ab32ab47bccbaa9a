"""The shared benchmark datasets with the fixed splits of ../shared/BENCHMARKS.md.

``split_bucket(text) = int(sha1(text.strip()), 16) % 10`` decides every split, so duplicate
sentences share a split and the split does not depend on file order.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from core.data.labelled import LabelledTexts
from core.data.splits import split_bucket  # noqa: F401 - also this module's public name

REPO_ROOT = Path(__file__).resolve().parents[1]


class DatasetMissingError(FileNotFoundError):
    """The shared datasets folder is not where it should be."""


def datasets_dir() -> Path:
    """``TEXTML_DATASETS_DIR``, else ``../shared/datasets`` beside the repository."""
    path = Path(os.environ.get("TEXTML_DATASETS_DIR", REPO_ROOT.parent / "shared" / "datasets"))
    if not path.is_dir():
        raise DatasetMissingError(f"no datasets at {path}; set TEXTML_DATASETS_DIR to the shared datasets folder")
    return path


def _split(texts: list[str], labels: list[str], name: str, keep,
           agreement: list[float] | None = None) -> LabelledTexts:
    rows = [i for i, t in enumerate(texts) if keep(split_bucket(t))]
    return LabelledTexts([texts[i] for i in rows], [labels[i] for i in rows], name,
                         [agreement[i] for i in rows] if agreement is not None else None)


# PhraseBank's files, loosest first, with the least share of annotators each one guarantees
PHRASEBANK_TIERS = {"50Agree": 0.5, "66Agree": 0.66, "75Agree": 0.75, "AllAgree": 1.0}


# the files each loader reads, relative to datasets_dir(), for the cards that name them
TWITTER_FILES = {"train": "twitter_financial_news_sentiment/sent_train.csv",
                 "test": "twitter_financial_news_sentiment/sent_valid.csv"}
BANKING77_FILES = {"train": "banking77/train.csv", "test": "banking77/test.csv"}


def phrasebank_path(agreement: str) -> str:
    """The file of one agreement tier, relative to ``datasets_dir()``."""
    return f"financial_phrasebank/Sentences_{agreement}.txt"


def _phrasebank_file(agreement: str) -> tuple[list[str], list[str]]:
    path = datasets_dir() / phrasebank_path(agreement)
    texts, labels = [], []
    for line in path.read_text(encoding="latin-1").splitlines():
        if "@" in line:
            text, label = line.rsplit("@", 1)
            texts.append(text.strip())
            labels.append(label.strip())
    return texts, labels


def phrasebank_agreement(texts: list[str]) -> list[float]:
    """Per sentence, the least annotator share of the strictest PhraseBank file that holds it."""
    share = {}
    for tier, least in PHRASEBANK_TIERS.items():  # loosest first, so stricter files overwrite
        share.update(dict.fromkeys(_phrasebank_file(tier)[0], least))
    return [share[t] for t in texts]


def phrasebank(agreement: str = "50Agree", with_agreement: bool = False) -> dict[str, LabelledTexts]:
    """Financial PhraseBank (latin-1, ``sentence@label``): train h 0..7, dev h 8, test h 9.

    ``with_agreement`` attaches each sentence's annotator agreement (from which of the four
    files hold it) for ``agreement_targets``; it reads all four files.
    """
    texts, labels = _phrasebank_file(agreement)
    shares = phrasebank_agreement(texts) if with_agreement else None
    name = f"phrasebank-{agreement}"
    return {"train": _split(texts, labels, f"{name}/train", lambda h: h <= 7, shares),
            "dev": _split(texts, labels, f"{name}/dev", lambda h: h == 8, shares),
            "test": _split(texts, labels, f"{name}/test", lambda h: h == 9, shares)}


def _read_csv(path: Path, text_column: str, label_column: str) -> tuple[list[str], list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [r[text_column] for r in rows], [r[label_column] for r in rows]


TWITTER_LABELS = {"0": "negative", "1": "positive", "2": "neutral"}  # Bearish, Bullish, Neutral


def twitter_financial() -> dict[str, LabelledTexts]:
    """Twitter financial news: sent_train h != 0 / h == 0, test = sent_valid; labels mapped to words."""
    root = datasets_dir()
    texts, labels = _read_csv(root / TWITTER_FILES["train"], "text", "label")
    labels = [TWITTER_LABELS[y] for y in labels]
    test_texts, test_labels = _read_csv(root / TWITTER_FILES["test"], "text", "label")
    return {"train": _split(texts, labels, "twitter/train", lambda h: h != 0),
            "dev": _split(texts, labels, "twitter/dev", lambda h: h == 0),
            "test": LabelledTexts(test_texts, [TWITTER_LABELS[y] for y in test_labels], "twitter/test")}


def banking77() -> dict[str, LabelledTexts]:
    """BANKING77: train.csv h != 0 / h == 0, test = test.csv."""
    root = datasets_dir()
    texts, labels = _read_csv(root / BANKING77_FILES["train"], "text", "category")
    test_texts, test_labels = _read_csv(root / BANKING77_FILES["test"], "text", "category")
    return {"train": _split(texts, labels, "banking77/train", lambda h: h != 0),
            "dev": _split(texts, labels, "banking77/dev", lambda h: h == 0),
            "test": LabelledTexts(test_texts, test_labels, "banking77/test")}
