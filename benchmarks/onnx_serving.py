"""``make bench-onnx``: the int8 ONNX serving path of the classifiers that ``make bench-quality`` trained.

For each task in ``var/bench/quality.json``: export its artifact to int8 ONNX, accept or reject it
on the dev split (within 1 accuracy point of PyTorch, recorded in the card), then report test
accuracy and examples/s of both on the test split. Figures are merged into
``var/bench/quality.json`` under each task's ``onnx_int8`` key.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.quality import BENCH_DIR, TASKS
from core.inference.classifier import TextClassifier
from core.inference.onnx_classifier import OnnxTextClassifier, export_int8

log = logging.getLogger("benchmarks.onnx_serving")


def _test_figures(classifier, texts: list[str], labels: list[str]) -> dict:
    started = time.monotonic()
    predicted = classifier.predict(texts).labels
    seconds = time.monotonic() - started
    return {"accuracy": float(np.mean([p == y for p, y in zip(predicted, labels, strict=True)])),
            "examples_per_s": round(len(texts) / seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.onnx_serving", description=__doc__)
    parser.add_argument("--figures", default=str(BENCH_DIR / "quality.json"))
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    path = Path(args.figures)
    if not path.exists():
        print(f"error: {path} does not exist; run `make bench-quality` first", file=sys.stderr)
        return 1
    for key in args.tasks:
        figures = json.loads(path.read_text())
        if key not in figures:
            log.info("skipping %s: not in %s", key, path)
            continue
        artifact = Path(figures[key]["artifact"])
        splits = TASKS[key][0]()
        verdict = export_int8(artifact, splits["dev"])
        test = splits["test"]
        result = {"dev": verdict,
                  "test_int8": _test_figures(OnnxTextClassifier(artifact), test.texts, test.labels),
                  "test_torch": _test_figures(TextClassifier.load(artifact, device="cpu"), test.texts, test.labels)}
        figures = json.loads(path.read_text())  # re-read: another benchmark may have merged meanwhile
        figures[key]["onnx_int8"] = result
        path.write_text(json.dumps(figures, indent=2))
        log.info("%s: %s", key, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
