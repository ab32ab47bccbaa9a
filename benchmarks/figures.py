"""Write a benchmark's figures where BENCHMARKS.md says (var/bench/<name>.json) and print them."""

from __future__ import annotations

import json
from pathlib import Path


def write_figures(output: str | Path, figures: dict) -> Path:
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    print(f"figures written to {output}")
    return output
