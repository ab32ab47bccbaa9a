"""Take the GPU check of ``bench-quality`` to a borrowed GPU machine that cannot download anything.

That machine gets the working tree plus at most 64 MiB of ignored files and has no network:
no ``../shared`` datasets, no model hub and none of our pinned packages (its own ``python3``
holds torch, transformers, accelerate, peft and scikit-learn). The kit (``.gpu-kit/``, git-ignored)
carries the benchmark's dataset files, all-MiniLM-L6-v2 with its weights stored as float16
(half of 87 MiB; widened back to float32 there, so training starts from the same numbers to
about 3 significant digits) and a CPU run's figures to compare with.

    python -m infra.gpu_kit pack --cpu-figures var/bench/quality.json     # here
    python3 -m infra.gpu_kit run --output-dir "$OUT"                      # there (carry .gpu-kit)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
KIT = REPO_ROOT / ".gpu-kit"
MODEL_NAME = "all-MiniLM-L6-v2"
HALF_WEIGHTS = "model.fp16.safetensors"
# the files benchmarks.datasets reads for the four quality tasks
DATASET_FILES = [
    "financial_phrasebank/Sentences_50Agree.txt", "financial_phrasebank/Sentences_AllAgree.txt",
    "twitter_financial_news_sentiment/sent_train.csv", "twitter_financial_news_sentiment/sent_valid.csv",
    "banking77/train.csv", "banking77/test.csv",
]
MODEL_FILES = ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"]
TRANSFER_LIMIT = 64 << 20
WORKING_TREE_ALLOWANCE = 8 << 20  # the repository travels with the kit (about 2 MiB now)


def convert_weights(source: Path, target: Path, dtype) -> None:
    """Copy a safetensors file with its floating-point tensors cast to ``dtype`` (integer ones as they are)."""
    from safetensors.torch import load_file, save_file

    weights = load_file(source)
    save_file({k: v.to(dtype) if v.is_floating_point() else v for k, v in weights.items()}, target)


def pack(kit: Path, cpu_figures: Path | None) -> int:
    """Write the kit; returns its size in bytes (checked against the transfer limit)."""
    import torch

    from benchmarks.datasets import datasets_dir
    from core.model_refs import resolve_model

    if cpu_figures is not None and not cpu_figures.is_file():
        raise SystemExit(f"--cpu-figures {cpu_figures}: no such file; pass a figures file of a CPU "
                         "`benchmarks.quality` run, or leave it out")
    shutil.rmtree(kit, ignore_errors=True)
    source = datasets_dir()
    for name in DATASET_FILES:
        (kit / "datasets" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, kit / "datasets" / name)
    model = Path(resolve_model(MODEL_NAME).location)
    (kit / MODEL_NAME).mkdir(parents=True)
    for name in MODEL_FILES:
        shutil.copyfile(model / name, kit / MODEL_NAME / name)
    convert_weights(model / "model.safetensors", kit / MODEL_NAME / HALF_WEIGHTS, torch.float16)
    if cpu_figures is not None:
        shutil.copyfile(cpu_figures, kit / "cpu-figures.json")
    size = sum(f.stat().st_size for f in kit.rglob("*") if f.is_file())
    if size > TRANSFER_LIMIT - WORKING_TREE_ALLOWANCE:
        raise SystemExit(f"the kit is {size / 2**20:.1f} MiB; with the working tree it must stay under 64 MiB")
    return size


def widen_weights(kit: Path) -> Path:
    """Write the float32 ``model.safetensors`` from the float16 copy; returns the model folder."""
    import torch

    folder = kit / MODEL_NAME
    if not (folder / HALF_WEIGHTS).is_file():
        raise SystemExit(f"no {folder / HALF_WEIGHTS}: run `python -m infra.gpu_kit pack` first and carry .gpu-kit")
    convert_weights(folder / HALF_WEIGHTS, folder / "model.safetensors", torch.float32)
    return folder


def run(kit: Path, output_dir: Path, extra: list[str]) -> int:
    """Unpack and run ``benchmarks.quality_gpu`` on the kit; figures go to ``output_dir``."""
    model = widen_weights(kit)
    os.environ["TEXTML_DATASETS_DIR"] = str(kit / "datasets")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from benchmarks import quality_gpu

    registry = tempfile.mkdtemp(prefix="gpu-check-models-")  # the models need not come back
    args = ["--base-model", str(model), "--registry", registry,
            "--output", str(output_dir / "quality-gpu.json")]
    if (kit / "cpu-figures.json").is_file():
        args += ["--cpu-figures", str(kit / "cpu-figures.json")]
    return quality_gpu.main(args + extra)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.gpu_kit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kit", type=Path, default=KIT, help=f"kit folder (default {KIT.name})")
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="here: write the kit")
    packing.add_argument("--cpu-figures", type=Path, help="a CPU run's figures file to compare with")
    running = commands.add_parser("run", help="on the GPU machine: run the check from the kit")
    running.add_argument("--output-dir", type=Path, default=Path(os.environ.get("OUT", "var/bench")))
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "run":
        parser.error(f"unknown arguments {extra}")
    if args.command == "pack":
        size = pack(args.kit, args.cpu_figures)
        print(f"kit {args.kit}: {size / 2**20:.1f} MiB; carry it as `.gpu-kit` to the GPU machine")
        return 0
    args.output_dir.mkdir(parents=True, exist_ok=True)
    return run(args.kit, args.output_dir, extra)


if __name__ == "__main__":
    sys.exit(main())
