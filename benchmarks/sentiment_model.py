"""Train the stream's production sentiment model: MiniLM fine-tuned on PhraseBank + Twitter financial news.

Data (../shared/BENCHMARKS.md splits, train splits only for training): Financial PhraseBank
``Sentences_50Agree`` (all data) h 0..7 and the Twitter financial news set sent_train h != 0
(Bearish -> negative, Bullish -> positive, Neutral -> neutral), shuffled together. Model
selection, early stopping and temperature scaling use both dev splits together; the test
figures are reported per dataset (PhraseBank accuracy, Twitter weighted F1) next to the
BENCHMARKS.md floors. The model is saved as a new version of ``finance-sentiment`` and promoted
to ``production`` by the registry's rule (a higher dev macro-F1 on the same dev set); a demo
model (trained on the shipped demo sentences) is always replaced, with the forced promotion
recorded in the card. Figures go to ``var/bench/sentiment_model.json``.

    python -m benchmarks.sentiment_model                         # ~20 min on 2 CPU cores
    python -m benchmarks.sentiment_model --max-train-minutes 10 --epochs 2
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from pathlib import Path

from benchmarks import datasets
from benchmarks.figures import write_figures
from core.artifacts import ModelCard, data_record
from core.data.labelled import LabelledTexts
from core.finetune.classifier import ClassifierTrainingConfig, train_classifier
from core.inference.classifier import TextClassifier, labelled_metrics
from core.registry import ModelNotFoundError, Registry

log = logging.getLogger("benchmarks.sentiment_model")
BENCH_DIR = datasets.REPO_ROOT / "var" / "bench"
FILES = {"phrasebank": datasets.phrasebank_path("50Agree"), "twitter": datasets.TWITTER_FILES["train"],
         "twitter_test": datasets.TWITTER_FILES["test"]}
FLOORS = {"phrasebank_accuracy": {"frozen_lr": 0.767, "plain_finetune": 0.813},
          "twitter_weighted_f1": {"frozen_lr": 0.781, "plain_finetune": 0.867}}


def combine(parts: list[LabelledTexts], name: str, seed: int) -> LabelledTexts:
    pairs = [(t, y) for part in parts for t, y in zip(part.texts, part.labels, strict=True)]
    random.Random(seed).shuffle(pairs)
    return LabelledTexts([t for t, _ in pairs], [y for _, y in pairs], name)


def promote(registry: Registry, name: str, version: int) -> str:
    """The registry's promotion rule, except that a demo model never blocks the real one."""
    try:
        current = registry.card(name, "production")
    except ModelNotFoundError:
        current = None
    demo = current is not None and str(current.extra.get("purpose", "")).startswith("demo")
    return registry.promote(name, version, force=demo).reason


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sentiment_model", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="finance-sentiment", help="registry model name (default finance-sentiment)")
    parser.add_argument("--base-model", default="all-MiniLM-L6-v2", help="encoder (default all-MiniLM-L6-v2)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs at most (default 3)")
    parser.add_argument("--max-length", type=int, default=80, help="tokens per text (default 80)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--max-train-minutes", type=float, default=20.0,
                        help="stop after the epoch that crosses this (default 20: the CPU budget)")
    parser.add_argument("--device", help="cpu or cuda (default: CUDA when available)")
    parser.add_argument("--no-promote", action="store_true", help="save the version without promoting it")
    parser.add_argument("--registry", help="registry root (default TEXTML_MODEL_DIR or var/models)")
    parser.add_argument("--output", default=str(BENCH_DIR / "sentiment_model.json"))
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--limit", type=int, help="use only N examples of each split (a smoke test, not a figure)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    phrasebank, twitter = datasets.phrasebank("50Agree"), datasets.twitter_financial()
    if args.limit:
        phrasebank, twitter = ({k: LabelledTexts(v.texts[:args.limit], v.labels[:args.limit], v.source)
                                for k, v in d.items()} for d in (phrasebank, twitter))
    train = combine([phrasebank["train"], twitter["train"]], "phrasebank50+twitter/train", args.seed)
    dev = combine([phrasebank["dev"], twitter["dev"]], "phrasebank50+twitter/dev", args.seed)
    log.info("train %d (phrasebank %d + twitter %d), dev %d", len(train), len(phrasebank["train"]),
             len(twitter["train"]), len(dev))
    config = ClassifierTrainingConfig(base_model=args.base_model, epochs=args.epochs, max_length=args.max_length,
                                      batch_size=args.batch_size, learning_rate=args.learning_rate,
                                      max_train_minutes=args.max_train_minutes, device=args.device, seed=args.seed,
                                      progress=False)
    started = time.monotonic()
    trained = train_classifier(config, train, dev)
    classifier = TextClassifier(trained.model, trained.tokenizer, device=config.device)
    tests = {"phrasebank": labelled_metrics(classifier, phrasebank["test"]),
             "twitter": labelled_metrics(classifier, twitter["test"])}

    root = datasets.datasets_dir()
    card = ModelCard(
        name=args.name, task="classifier", base_model=config.base_model,
        data=[data_record(root / FILES["phrasebank"], "train", rows=len(phrasebank["train"])),
              data_record(root / FILES["twitter"], "train", rows=len(twitter["train"])),
              data_record(root / FILES["phrasebank"], "dev", rows=len(phrasebank["dev"])),
              data_record(root / FILES["twitter"], "dev", rows=len(twitter["dev"])),
              data_record(root / FILES["phrasebank"], "test", rows=len(phrasebank["test"])),
              data_record(root / FILES["twitter_test"], "test", rows=len(twitter["test"]))],
        hyperparameters=trained.hyperparameters(), labels=trained.labels,
        metrics={"dev": trained.metrics["dev"], "test_phrasebank": tests["phrasebank"],
                 "test_twitter": tests["twitter"]},
        extra={"purpose": "production sentiment model of apps/finance_monitor (benchmarks/sentiment_model.py)",
               "split": "sha1(text) % 10 per ../shared/BENCHMARKS.md", "history": trained.history,
               "best_epoch": trained.best_epoch, "temperature": trained.metrics["temperature"]},
    )
    registry = Registry(Path(args.registry) if args.registry else None)
    path = registry.save(args.name, trained.save, card)
    reason = "not promoted (--no-promote)" if args.no_promote else promote(registry, args.name, card.version)
    figures = {
        "model": f"{args.name}:v{card.version}", "artifact": str(path), "promotion": reason,
        "phrasebank_accuracy": tests["phrasebank"]["accuracy"], "phrasebank_macro_f1": tests["phrasebank"]["macro_f1"],
        "twitter_weighted_f1": tests["twitter"]["weighted_f1"], "twitter_accuracy": tests["twitter"]["accuracy"],
        "dev": trained.metrics["dev"], "floors": FLOORS, "train_examples": len(train),
        "train_seconds": round(trained.train_seconds, 1), "wall_seconds": round(time.monotonic() - started, 1),
        "train_examples_per_s": round(trained.train_examples_per_s, 2), "epochs_run": len(trained.history),
        "best_epoch": trained.best_epoch, "device": classifier.device_info.name,
    }
    write_figures(args.output, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
