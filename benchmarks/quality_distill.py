"""Distil an ensemble of one task's registered fine-tunes into one student, scored like ``benchmarks.quality``.

The teachers (versions already in the registry) label unlabelled in-domain text with their
mean calibrated probabilities (``core.finetune.distill``); the student fine-tunes on the
task's gold train rows plus those soft rows, selects its epoch on dev, is tested once and
saved as the task's next version. The registry's promotion rule decides whether it becomes
production, as for any fine-tune. The unlabelled text is the Twitter financial news train
split's text (its labels are not read), minus any sentence of the task's dev or test split.
The teachers' probabilities are cached in ``var/cache/distill`` (they take minutes on a CPU).

    python -m benchmarks.quality_distill --tasks fpb50 --teachers 19 11 14 21 13 15 \\
        --base-model var/models/sentiment-fpb-allagree/v5/encoder --epochs 3 --unlabelled-rows 4000
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import random
import sys
from pathlib import Path

import numpy as np

from benchmarks import datasets, quality
from core.artifacts import data_record
from core.atomic import atomic_write_bytes
from core.finetune.distill import SoftLabelled, teacher_probabilities, without_texts
from core.inference.classifier import TextClassifier
from core.registry import Registry

log = logging.getLogger("benchmarks.quality_distill")
CACHE_DIR = datasets.REPO_ROOT / "var" / "cache" / "distill"

# unlabelled text source -> (its texts, the file they come from relative to datasets_dir())
UNLABELLED = {"twitter": (lambda: datasets.twitter_financial()["train"].texts, datasets.TWITTER_FILES["train"])}


def unlabelled_texts(source: str, rows: int, held_out: list[str], seed: int) -> list[str]:
    """``rows`` texts drawn (seeded) from ``source``, none of them in ``held_out``."""
    texts = sorted(set(without_texts(UNLABELLED[source][0](), held_out)))
    if rows > len(texts):
        raise SystemExit(f"--unlabelled-rows {rows}: {source} has only {len(texts)} usable texts")
    return random.Random(seed).sample(texts, rows)


def cached_teacher_probabilities(teachers: dict[str, Path], texts: list[str], source: str,
                                 device: str | None) -> SoftLabelled:
    """The teachers' mean probabilities on ``texts``, computed once per (teachers, texts)."""
    key = hashlib.sha1(json.dumps([sorted(str(p) for p in teachers.values()), texts]).encode()).hexdigest()[:16]
    path = CACHE_DIR / f"{key}.npz"
    if path.exists():
        cached = np.load(path, allow_pickle=False)
        log.info("teacher probabilities from %s", path)
        return SoftLabelled(texts, cached["probabilities"], [str(c) for c in cached["classes"]], source)
    log.info("labelling %d texts with %d teachers (%s)", len(texts), len(teachers), ", ".join(teachers))
    soft = teacher_probabilities([TextClassifier.load(p, device=device) for p in teachers.values()], texts, source)
    buffer = io.BytesIO()
    np.savez(buffer, probabilities=soft.probabilities, classes=np.array(soft.classes))
    atomic_write_bytes(path, buffer.getvalue())
    return soft


def distillation(key: str, versions: list[int], source: str, rows: int, splits: dict, registry: Registry,
                 seed: int, device: str | None) -> quality.Distillation:
    """The soft rows of a student of ``key``, labelled by the task's ``versions``."""
    name = quality.TASKS[key][1]
    teachers = {f"v{v}": registry.path(name, v) for v in versions}
    texts = unlabelled_texts(source, rows, splits["dev"].texts + splits["test"].texts, seed)
    soft = cached_teacher_probabilities(teachers, texts, f"{name} {'+'.join(teachers)} on {source}", device)
    teacher_dev = {v: registry.card(name, v).metrics["dev"]["macro_f1"] for v in versions}
    summary = {"teachers": list(teachers), "teacher_dev_macro_f1": {f"v{v}": f for v, f in teacher_dev.items()},
               "unlabelled": source, "unlabelled_rows": rows, "unlabelled_seed": seed,
               "soft_label_distribution": dict(zip(soft.classes, np.round(soft.probabilities.mean(0), 4).tolist(),
                                                   strict=True))}
    return quality.Distillation(soft, [data_record(datasets.datasets_dir() / UNLABELLED[source][1], "train")], summary)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality_distill", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    quality.add_training_arguments(parser)
    parser.add_argument("--teachers", nargs="+", type=int, required=True,
                        help="versions of the task's model whose mean probabilities label the unlabelled text")
    parser.add_argument("--unlabelled", choices=list(UNLABELLED), default="twitter",
                        help="unlabelled text source (default twitter: the Twitter financial news train text)")
    parser.add_argument("--unlabelled-rows", type=int, default=4000, help="how many unlabelled texts (default 4000)")
    parser.add_argument("--unlabelled-seed", type=int,
                        help="seed of the draw of unlabelled texts (default: --seed); the same draw and teachers "
                             "reuse the cached teacher probabilities")
    parser.add_argument("--device", help="cpu, cuda (default: CUDA when available)")
    parser.add_argument("--output", default=str(quality.BENCH_DIR / "quality.json"),
                        help="figures of the production models (each run also writes quality-<task>-v<N>.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    base, overrides = quality.training_setup(args, args.device)
    registry = Registry(Path(args.registry) if args.registry else None)
    output = Path(args.output)
    for key in args.tasks:
        splits = quality.load_splits(key, quality.task_config(key, base, overrides))
        extra = distillation(key, args.teachers, args.unlabelled, args.unlabelled_rows, splits, registry,
                             args.seed if args.unlabelled_seed is None else args.unlabelled_seed, args.device)
        result = quality.run_task(key, base, overrides, registry, splits, extra)
        quality.record_run(output, key, result)
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
