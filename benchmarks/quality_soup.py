"""Greedy model soup of one benchmark task's registered fine-tunes, scored like ``benchmarks.quality``.

The candidates are versions already trained by ``benchmarks.quality`` (other seeds, other
starting encoders); dev picks the ingredients (``core.finetune.soup``), test is scored once,
and the soup is saved as the task's next version. The registry's promotion rule decides
whether it becomes production; only then does it replace the task's entry in
``var/bench/quality.json``. Every run also writes ``var/bench/quality-<task>-v<N>.json``.

    python -m benchmarks.quality_soup --task fpb50 --versions 3 4 5 6 7 8
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from benchmarks import datasets
from benchmarks.quality import BENCH_DIR, TASKS, figures_entry, record_run
from core.artifacts import ModelCard, data_record
from core.finetune.soup import soup_card_fields, soup_from_registry
from core.inference.classifier import TextClassifier, labelled_metrics
from core.registry import Registry

log = logging.getLogger("benchmarks.quality_soup")


def ingredient_training(cards: list, kept: list[str], train_rows: int) -> tuple[float, float]:
    """Summed fine-tuning seconds of the kept ingredients and their examples/s (from the epoch logs).

    An epoch log's ``seconds`` is the time since training started, so the last one is the run's.
    """
    seconds, examples = 0.0, 0
    for card in cards:
        if f"v{card.version}" in kept and card.extra.get("history"):
            history = card.extra["history"]
            seconds += history[-1]["seconds"]
            examples += train_rows * len(history)
    return seconds, (examples / seconds if seconds else 0.0)


def run_soup(key: str, versions: list[int], metric: str, registry: Registry, device: str | None) -> dict | None:
    """The soup's figures, or None (nothing saved) when no average beat the best candidate on dev."""
    loader, name, files, _ = TASKS[key]
    splits = loader()
    soup, cards = soup_from_registry(registry, name, versions, splits["dev"], metric, device)
    if not soup.averages:
        log.info("%s: no average beat %s alone on dev %s; nothing saved", key, soup.ingredients[0], metric)
        return None
    test = splits["test"]
    test_metrics = labelled_metrics(TextClassifier(soup.model, soup.tokenizer, device=device), test)

    root = datasets.datasets_dir()
    fields = soup_card_fields(soup, cards, metric)
    fields["data"] += [data_record(root / files[1], "dev", rows=len(splits["dev"])),
                       data_record(root / files[2], "test", rows=len(test))]
    fields["extra"]["split"] = "sha1(text) % 10 per ../shared/BENCHMARKS.md"
    card = ModelCard(name=name, task="classifier", primary_metric=metric,
                     metrics={"dev": soup.metrics["dev"], "test": test_metrics}, **fields)
    artifact = registry.save(name, soup.save, card)
    promotion = registry.promote(name, artifact.name)
    train_seconds, per_second = ingredient_training(cards, soup.ingredients, len(splits["train"]))
    result = figures_entry(
        key, test_metrics, soup.metrics, promotion, artifact, card.base_model,
        train_seconds + soup.seconds, per_second, method="greedy_soup", metric=metric,
        candidates=[f"v{v}" for v in versions], ingredients=soup.ingredients, steps=soup.steps,
        soup_seconds=round(soup.seconds, 1),
        ingredient_base_models={f"v{c.version}": c.base_model for c in cards if f"v{c.version}" in soup.ingredients},
    )
    log.info("%s soup %s test: %s; %s", key, soup.ingredients,
             {k: round(result[k], 4) for k in ("accuracy", "macro_f1", "weighted_f1", "ece")}, promotion.reason)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality_soup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=list(TASKS), required=True)
    parser.add_argument("--versions", nargs="+", type=int, required=True, help="candidate versions of the task's model")
    parser.add_argument("--metric", choices=["accuracy", "macro_f1", "weighted_f1"], default="macro_f1",
                        help="dev metric of the greedy steps (promotion compares the same one)")
    parser.add_argument("--device", help="cpu, cuda (default: CUDA when available)")
    parser.add_argument("--registry", help="model registry root (default var/models)")
    parser.add_argument("--output", default=str(BENCH_DIR / "quality.json"),
                        help="figures of the production models (each run also writes quality-<task>-v<N>.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    registry = Registry(Path(args.registry) if args.registry else None)
    result = run_soup(args.task, args.versions, args.metric, registry, args.device)
    if result is None:
        print("no soup: the best candidate alone is at least as good on dev as every average tried")
        return 0
    record_run(Path(args.output), args.task, result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
