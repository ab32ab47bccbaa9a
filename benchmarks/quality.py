"""``make bench-quality``: fine-tune and test the classifiers of ../shared/BENCHMARKS.md.

For each task: train on the train split, select the epoch and fit the temperature on dev,
report test accuracy, macro-F1, weighted F1 and ECE, wall time and examples/s, and keep the
model as a versioned artifact in the registry. ``var/bench/quality.json`` describes the
production models (the ones the apps load): a task's entry there is replaced only when the
registry promotes the new version (merged task by task, so a partial run keeps what
finished). Every run's figures also go to ``var/bench/quality-<task>-v<N>.json``.

    python -m benchmarks.quality                      # all four tasks
    python -m benchmarks.quality --tasks fpb50 banking77 --base-model all-mpnet-base-v2
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from benchmarks import datasets
from core.artifacts import ModelCard, data_record, library_versions
from core.cli import CLASSIFIER_HELP
from core.finetune.classifier import ClassifierTrainingConfig, train_classifier
from core.finetune.distill import SoftLabelled
from core.inference.classifier import TextClassifier, labelled_metrics
from core.registry import Registry

log = logging.getLogger("benchmarks.quality")
BENCH_DIR = datasets.REPO_ROOT / "var" / "bench"

# task key -> (loader, registry name, the files of the train/dev/test splits, per-task training settings)
TASKS = {
    "fpb50": (lambda: datasets.phrasebank("50Agree"), "sentiment-fpb50",
              [datasets.phrasebank_path("50Agree")] * 3,
              # half the annotators may disagree with a label: smoothing keeps the model from memorising them
              {"epochs": 5, "max_length": 96, "label_smoothing": 0.1}),
    "fpb_allagree": (lambda: datasets.phrasebank("AllAgree"), "sentiment-fpb-allagree",
                     [datasets.phrasebank_path("AllAgree")] * 3, {"epochs": 6, "max_length": 96}),
    "twitter_fin": (datasets.twitter_financial, "sentiment-twitter",
                    [datasets.TWITTER_FILES["train"]] * 2 + [datasets.TWITTER_FILES["test"]],
                    {"epochs": 4, "max_length": 64}),
    "banking77": (datasets.banking77, "intent-banking77",
                  [datasets.BANKING77_FILES["train"]] * 2 + [datasets.BANKING77_FILES["test"]],
                  {"epochs": 5, "max_length": 64}),
}
# tasks whose data also says how many annotators chose each label (for --agreement-targets):
# the loader that attaches it, and the extra files that loader reads
AGREEMENT_DATA = {
    "fpb50": (lambda: datasets.phrasebank("50Agree", with_agreement=True),
              [datasets.phrasebank_path(tier) for tier in datasets.PHRASEBANK_TIERS if tier != "50Agree"]),
}
FLOORS = {  # test figures measured on this protocol (BENCHMARKS.md): frozen MiniLM + LR, plain fine-tune
    "fpb50": {"metric": "accuracy", "frozen_lr": 0.767, "plain_finetune": 0.813, "target": 0.86},
    "fpb_allagree": {"metric": "accuracy", "frozen_lr": 0.906, "plain_finetune": None, "target": 0.97},
    "twitter_fin": {"metric": "weighted_f1", "frozen_lr": 0.781, "plain_finetune": 0.867, "target": 0.89},
    "banking77": {"metric": "accuracy", "frozen_lr": 0.928, "plain_finetune": 0.869, "target": 0.94},
}


@dataclass(frozen=True)
class Distillation:
    """Soft-labelled rows for a student (``benchmarks.quality_distill``), with what its card records:
    the files the rows came from (``data``) and who labelled them (``summary``)."""

    soft: SoftLabelled
    data: list[dict]
    summary: dict


def machine() -> dict:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu_count": os.cpu_count(), "threads": torch.get_num_threads(), "gpu": gpu,
            "platform": platform.platform(), "libraries": library_versions()}


def figures_entry(key: str, test: dict, dev: dict, promotion, artifact: Path, base_model: str,
                  train_seconds: float, train_examples_per_s: float, **details) -> dict:
    """One task's entry of the figures file: the keys other tools read (the issue names them), then ``details``.

    ``dev`` holds the calibrated dev metrics (``dev``) and the ECE before calibration
    (``dev_uncalibrated_ece``), as a trained classifier's or a soup's ``metrics`` do.
    """
    return {
        "accuracy": test["accuracy"], "macro_f1": test["macro_f1"], "weighted_f1": test["weighted_f1"],
        "ece": test["ece"], "train_seconds": round(train_seconds, 1),
        "train_examples_per_s": round(train_examples_per_s, 2), "base_model": base_model,
        "artifact": str(artifact), "test_examples": test["examples"], "dev": dev["dev"],
        "dev_uncalibrated_ece": dev["dev_uncalibrated_ece"], "floor": FLOORS[key], **details,
        "production": promotion.promoted, "promotion": promotion.reason,
    }


def task_config(key: str, base: ClassifierTrainingConfig, overrides: dict) -> ClassifierTrainingConfig:
    """The fine-tune settings of one task: ``overrides`` (from the command line) beat per-task settings."""
    return replace(base, **{**TASKS[key][3], **overrides})


def card_data(key: str, splits: dict, config: ClassifierTrainingConfig) -> list[dict]:
    """The card's data records: the split files, and the files the agreement came from (train inputs too)."""
    root = datasets.datasets_dir()
    records = [data_record(root / f, role, rows=len(splits[role]))
               for f, role in zip(TASKS[key][2], ("train", "dev", "test"), strict=True)]
    extra = AGREEMENT_DATA[key][1] if config.agreement_targets else []
    return records + [data_record(root / f, "train") for f in extra]


def load_splits(key: str, config: ClassifierTrainingConfig) -> dict:
    """The task's train/dev/test, with annotator agreement attached when the config trains on it."""
    if config.agreement_targets:
        check_agreement_tasks([key])
        return AGREEMENT_DATA[key][0]()
    return TASKS[key][0]()


def run_task(key: str, base: ClassifierTrainingConfig, overrides: dict, registry: Registry,
             splits: dict | None = None, distillation: Distillation | None = None) -> dict:
    """Train, test and register one task (on ``splits`` when the caller has loaded them already;
    with ``distillation``'s soft-labelled rows added to the training data when given)."""
    name = TASKS[key][1]
    config = task_config(key, base, overrides)
    splits = splits or load_splits(key, config)
    log.info("== %s: %d train / %d dev / %d test, %s", key, len(splits["train"]), len(splits["dev"]),
             len(splits["test"]), config.base_model)
    trained = train_classifier(config, splits["train"], splits["dev"],
                               distillation.soft if distillation is not None else None)

    test = splits["test"]
    classifier = TextClassifier(trained.model, trained.tokenizer, device=config.device)
    started = time.monotonic()
    test_metrics = labelled_metrics(classifier, test)
    predict_seconds = time.monotonic() - started

    extra = {"split": "sha1(text) % 10 per ../shared/BENCHMARKS.md", "history": trained.history,
             "best_epoch": trained.best_epoch, "temperature": trained.metrics["temperature"],
             "dev_uncalibrated_ece": trained.metrics["dev_uncalibrated_ece"]}
    data = card_data(key, splits, config)
    details = {}
    if distillation is not None:
        data += distillation.data
        extra["distillation"] = details["distillation"] = distillation.summary
    card = ModelCard(
        name=name, task="classifier", base_model=config.base_model, data=data,
        hyperparameters=trained.hyperparameters(), labels=trained.labels,
        metrics={"dev": trained.metrics["dev"], "test": test_metrics}, extra=extra,
    )
    artifact = registry.save(name, trained.save, card)
    promotion = registry.promote(name, artifact.name)  # production only if dev is not worse than the current one
    result = figures_entry(
        key, test_metrics, trained.metrics, promotion, artifact, config.base_model,
        trained.train_seconds, trained.train_examples_per_s,
        best_epoch=trained.best_epoch, epochs_run=len(trained.history),
        predict_examples_per_s=round(len(test) / predict_seconds, 1), method=config.method,
        head_init=config.head_init, layer_lr_decay=config.layer_lr_decay, learning_rate=config.learning_rate,
        label_smoothing=config.label_smoothing, agreement_targets=config.agreement_targets, rdrop=config.rdrop,
        ema=config.ema,
        seed=config.seed, device=str(classifier.device_info.name), **details,
    )
    log.info("%s test: %s", key, {k: result[k] for k in ("accuracy", "macro_f1", "weighted_f1", "ece")})
    return result


def merge_results(path: Path, key: str, result: dict) -> dict:
    figures = json.loads(path.read_text()) if path.exists() else {}
    figures[key] = result
    figures["machine"] = machine()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2))
    return figures


def record_run(output: Path, key: str, result: dict) -> None:
    """Figures of one run: always ``quality-<task>-v<N>.json`` beside ``output``; ``output`` if production."""
    merge_results(output.parent / f"quality-{key}-{Path(result['artifact']).name}.json", key, result)
    if result["production"]:
        merge_results(output, key, result)
    else:
        log.info("%s: %s, so %s keeps the production model's figures", key, result["promotion"], output)


def check_agreement_tasks(tasks: list[str]) -> None:
    """Refuse --agreement-targets, before any training, for tasks whose data has no agreement."""
    missing = [key for key in tasks if key not in AGREEMENT_DATA]
    if missing:
        raise SystemExit(f"--agreement-targets: task(s) {missing} have no per-row annotator agreement; "
                         f"only {sorted(AGREEMENT_DATA)} do")


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a benchmark fine-tune, shared with ``benchmarks.quality_gpu``."""
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--base-model", default="all-MiniLM-L6-v2", help="encoder reference (default all-MiniLM-L6-v2)")
    parser.add_argument("--epochs", type=int, help="override the per-task epochs")
    parser.add_argument("--max-length", type=int, help="override the per-task max length")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--method", choices=["full", "lora"], default="full")
    parser.add_argument("--head-init", choices=["probe", "random"], default="probe",
                        help="probe: LP-FT, the head starts as a logistic regression on frozen features (default)")
    parser.add_argument("--layer-lr-decay", type=float, default=0.9,
                        help="layer-wise learning-rate decay; 1.0 = one learning rate for all layers (default 0.9)")
    parser.add_argument("--label-smoothing", type=float, default=None,
                        help="override the per-task label smoothing (PhraseBank 50Agree 0.1 for its noisy labels, "
                             "else 0)")
    parser.add_argument("--agreement-targets", action="store_true",
                        help="train toward soft targets from each sentence's annotator agreement (PhraseBank "
                             "50Agree: which of its four files hold the sentence)")
    parser.add_argument("--rdrop", type=float, default=0.0, help=CLASSIFIER_HELP["rdrop"] + " (default 0)")
    parser.add_argument("--ema", type=float, default=0.0, help=CLASSIFIER_HELP["ema"] + " (default 0)")
    parser.add_argument("--max-train-minutes", type=float, default=18.0,
                        help="per task: stop after the epoch that crosses this (default 18, the CPU budget is 20)")
    parser.add_argument("--seed", type=int, default=13, help="random seed of the fine-tune (default 13)")
    parser.add_argument("--registry", help="model registry root (default var/models)")


def training_setup(args: argparse.Namespace, device: str | None) -> tuple[ClassifierTrainingConfig, dict]:
    """The base config and the per-task overrides that the command line asks for."""
    base = ClassifierTrainingConfig(base_model=args.base_model, batch_size=args.batch_size,
                                    learning_rate=args.learning_rate, method=args.method,
                                    head_init=args.head_init, layer_lr_decay=args.layer_lr_decay,
                                    max_train_minutes=args.max_train_minutes, device=device, seed=args.seed,
                                    rdrop=args.rdrop, ema=args.ema, progress=False)
    overrides = {k: v for k, v in {"epochs": args.epochs, "max_length": args.max_length}.items() if v}
    if args.label_smoothing is not None:
        overrides["label_smoothing"] = args.label_smoothing
    if args.agreement_targets:
        check_agreement_tasks(args.tasks)
        overrides["agreement_targets"] = True
    return base, overrides


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_arguments(parser)
    parser.add_argument("--device", help="cpu, cuda (default: CUDA when available)")
    parser.add_argument("--output", default=str(BENCH_DIR / "quality.json"),
                        help="figures of the production models (each run also writes quality-<task>-v<N>.json)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, dict]:
    """Train, test, register and record each task of ``args``; their figures entries by task."""
    base, overrides = training_setup(args, args.device)
    registry = Registry(Path(args.registry) if args.registry else None)
    output = Path(args.output)
    results = {}
    for key in args.tasks:
        results[key] = run_task(key, base, overrides, registry)
        record_run(output, key, results[key])
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    print(json.dumps(run(args), indent=2))
    print(f"production figures in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
