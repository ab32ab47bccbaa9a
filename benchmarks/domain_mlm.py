"""Adapt an encoder to financial text by continued MLM pre-training (core.finetune.mlm), for ``bench-quality``.

The corpus is the unlabelled text of the *train* splits only, so no dev or test sentence of
any task is trained on. ``--corpus finance`` (domain-adaptive, DAPT) takes PhraseBank 50Agree,
which holds every AllAgree sentence, and Twitter financial news; ``--corpus phrasebank``
(task-adaptive, TAPT: several epochs over the task's own text, Gururangan et al. 2020) takes
PhraseBank 50Agree alone, and is meant to continue from a DAPT encoder. The PhraseBank 50Agree
dev sentences give the masked-token loss and accuracy before and after. The encoder is saved
to the registry as ``encoder-finance`` (one version per run); pass its folder to
``benchmarks.quality --base-model``.

    python -m benchmarks.domain_mlm --base-model all-mpnet-base-v2 --epochs 1
    python -m benchmarks.domain_mlm --base-model var/models/encoder-finance/v1 --corpus phrasebank --epochs 4
    python -m benchmarks.quality --tasks fpb50 --base-model var/models/encoder-finance/v2
"""

from __future__ import annotations

import argparse
import json
import logging

from benchmarks import datasets
from core.artifacts import ModelCard, data_record
from core.finetune.mlm import MlmTrainingConfig, train_mlm
from core.registry import Registry

NAME = "encoder-finance"
CORPORA = {
    "finance": "train splits of PhraseBank 50Agree and Twitter financial news (no dev/test)",
    "phrasebank": "train split of PhraseBank 50Agree (no dev/test)",
}


def corpus(name: str = "finance") -> tuple[list[str], list[str], list[dict]]:
    """Train texts (deduplicated), dev texts and the data records of the files they came from."""
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}: expected one of {sorted(CORPORA)}")
    root = datasets.datasets_dir()
    phrasebank_file = root / datasets.phrasebank_path("50Agree")
    phrasebank = datasets.phrasebank("50Agree")
    texts, records = list(phrasebank["train"].texts), [data_record(phrasebank_file, "train")]
    if name == "finance":
        texts += datasets.twitter_financial()["train"].texts
        records.append(data_record(root / datasets.TWITTER_FILES["train"], "train"))
    records.append(data_record(phrasebank_file, "dev"))
    return list(dict.fromkeys(texts)), phrasebank["dev"].texts, records


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.domain_mlm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", default="all-mpnet-base-v2")
    parser.add_argument("--corpus", choices=sorted(CORPORA), default="finance",
                        help="finance: PhraseBank and Twitter train text (DAPT); phrasebank: PhraseBank train text "
                             "alone (TAPT) (default finance)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--max-train-minutes", type=float, default=30.0)
    parser.add_argument("--registry", help="model registry root (default var/models)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    """Adapt the encoder and save it to the registry; its artifact folder, dev metrics and train time."""
    texts, dev_texts, records = corpus(args.corpus)
    config = MlmTrainingConfig(base_model=args.base_model, epochs=args.epochs, learning_rate=args.learning_rate,
                               max_length=args.max_length, max_train_minutes=args.max_train_minutes)
    adapted = train_mlm(config, texts, dev_texts)
    card = ModelCard(name=NAME, task="encoder", base_model=args.base_model, data=records,
                     hyperparameters=adapted.hyperparameters(), metrics=adapted.metrics,
                     primary_metric="mlm_accuracy",
                     extra={"history": adapted.history, "train_seconds": round(adapted.train_seconds, 1),
                            "train_examples_per_s": round(adapted.train_examples_per_s, 2),
                            "train_texts": len(texts), "head_was_new": adapted.head_was_new,
                            "corpus": CORPORA[args.corpus]})
    path = Registry(args.registry).save(NAME, adapted.save, card)
    return {"artifact": str(path), "metrics": adapted.metrics, "train_seconds": card.extra["train_seconds"],
            "train_texts": len(texts)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(json.dumps(run(args), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
