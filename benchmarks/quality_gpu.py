"""GPU check of ``bench-quality``: the same benchmark with bf16 on a CUDA GPU, against the CPU.

For each task it runs ``benchmarks.quality``'s fine-tune and test on the GPU (bf16 autocast,
the same settings and splits), then times training on one slice of the train split on the GPU
and on the same machine's CPU, so that the speed-up compares like with like. When a figures
file of a CPU run is given (``--cpu-figures``, e.g. ``var/bench/quality.json`` written on the
project's 2-core machines), its examples/s for the same task are set beside the GPU's.

Writes ``var/bench/quality-gpu.json``: per task the keys of ``quality.json`` (accuracy,
macro_f1, weighted_f1, ece, train_seconds, train_examples_per_s, base_model, artifact) plus
``same_machine`` and ``cpu_reference``.

    python -m benchmarks.quality_gpu                                  # MiniLM, all four tasks
    python -m benchmarks.quality_gpu --cpu-figures var/bench/quality.json --base-model all-mpnet-base-v2

A GPU machine without a network runs it from the kit of ``infra/gpu_check`` (see the README).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks import quality
from core.data.labelled import LabelledTexts
from core.finetune.classifier import ClassifierTrainingConfig, train_classifier
from core.registry import Registry

log = logging.getLogger("benchmarks.quality_gpu")
SLICE_DEV_EXAMPLES = 128


def training_slice(splits: dict[str, LabelledTexts], examples: int) -> tuple[LabelledTexts, LabelledTexts]:
    """``examples`` train rows spread evenly over the split (some files are sorted by label), and
    the dev rows whose labels that slice holds."""
    train = splits["train"]
    count = min(examples, len(train))
    picked = [i * len(train) // count for i in range(count)]
    texts, labels = [train.texts[i] for i in picked], [train.labels[i] for i in picked]
    known = set(labels)
    dev = [(t, y) for t, y in zip(splits["dev"].texts, splits["dev"].labels, strict=True) if y in known]
    dev = dev[:SLICE_DEV_EXAMPLES]
    return (LabelledTexts(texts, labels, f"{train.source}[{len(picked)} spread rows]"),
            LabelledTexts([t for t, _ in dev], [y for _, y in dev], f"{splits['dev'].source}[slice]"))


def slice_throughput(config: ClassifierTrainingConfig, train: LabelledTexts, dev: LabelledTexts,
                     device: str) -> dict:
    """Train one epoch of the slice on ``device``; examples/s as the benchmark counts them."""
    trained = train_classifier(replace(config, device=device, epochs=1, max_train_minutes=None), train, dev)
    return {"examples_per_s": round(trained.train_examples_per_s, 2), "seconds": round(trained.train_seconds, 2)}


def cpu_reference(figures: dict, key: str, base_model: str) -> dict | None:
    """This task's CPU figures from another run's figures file, if it holds the task."""
    entry = figures.get(key)
    if not isinstance(entry, dict):
        return None
    machine = figures.get("machine", {})
    return {"train_examples_per_s": entry["train_examples_per_s"], "train_seconds": entry["train_seconds"],
            "accuracy": entry["accuracy"], "base_model": entry["base_model"], "epochs_run": entry.get("epochs_run"),
            # a kit may carry the base model under a local path: compare the model's folder name
            "same_base_model": Path(entry["base_model"]).name.lower() == Path(base_model).name.lower(),
            "cpu_count": machine.get("cpu_count"), "threads": machine.get("threads")}


def check_task(key: str, base: ClassifierTrainingConfig, overrides: dict, registry: Registry,
               slice_examples: int, reference: dict) -> dict:
    """The GPU benchmark of one task, and its throughput against the CPU."""
    splits = quality.TASKS[key][0]()
    result = quality.run_task(key, base, overrides, registry, splits)
    config = quality.task_config(key, base, overrides)
    train, dev = training_slice(splits, slice_examples)
    gpu = slice_throughput(config, train, dev, base.device)
    cpu = slice_throughput(config, train, dev, "cpu")
    result["same_machine"] = {"examples": len(train), "gpu": gpu, "cpu": cpu,
                              "cpu_threads": torch.get_num_threads(),
                              "speedup": round(gpu["examples_per_s"] / cpu["examples_per_s"], 1)}
    result["cpu_reference"] = cpu_reference(reference, key, config.base_model)
    if result["cpu_reference"]:
        result["speedup_vs_cpu_reference"] = round(
            result["train_examples_per_s"] / result["cpu_reference"]["train_examples_per_s"], 1)
    log.info("%s: GPU %.0f examples/s, this machine's CPU %.0f (slice of %d)", key,
             gpu["examples_per_s"], cpu["examples_per_s"], len(train))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality_gpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    quality.add_training_arguments(parser)
    parser.add_argument("--device", default="cuda", help="the GPU (default cuda); cpu only to try the script")
    parser.add_argument("--slice-examples", type=int, default=2048,
                        help="train rows timed on both the GPU and this machine's CPU (default 2048)")
    parser.add_argument("--cpu-figures", help="a CPU run's figures file (quality.json schema) to compare with")
    parser.add_argument("--output", default=str(quality.BENCH_DIR / "quality-gpu.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA GPU is visible here (torch {torch.__version__}); "
                     "this check needs one (--device cpu only tries the script)")
    if args.slice_examples < 64:
        parser.error(f"--slice-examples {args.slice_examples}: need at least 64 rows to time")
    reference = json.loads(Path(args.cpu_figures).read_text()) if args.cpu_figures else {}

    base, overrides = quality.training_setup(args, args.device)
    registry = Registry(Path(args.registry) if args.registry else None)
    output = Path(args.output)
    for key in args.tasks:
        result = check_task(key, base, overrides, registry, args.slice_examples, reference)
        quality.merge_results(output, key, result)
    print(output.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
