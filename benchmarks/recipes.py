"""``make bench-quality-production``: rebuild the production models behind ``var/bench/quality.json``.

The production figures come from recipes of several steps (an encoder adapted by masked-LM
training, fine-tunes whose encoders start the next one, ...), run one command at
a time over many sessions. This module writes those recipes down, so that a fresh clone (or a
wiped ``var/``) gets the same models back with one command instead of from the notes.

Each step is a call of ``benchmarks.domain_mlm`` or ``benchmarks.quality`` with fixed options;
``{step}`` in an option is the artifact folder an earlier step of the same recipe saved. Steps
run in order, and the artifacts of finished steps are recorded in ``recipe-<name>.json`` beside
the figures file with the options they ran with, so an interrupted run resumes at the step it
stopped in, and a step edited since it ran runs again. The registry's
promotion rule still decides what becomes production.

    python -m benchmarks.recipes --list
    python -m benchmarks.recipes fpb50 --dry-run
    python -m benchmarks.recipes all                   # over 3 hours on 2 CPU cores
    python -m benchmarks.recipes fpb50 --reuse dapt=var/models/encoder-finance/v1
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks import domain_mlm, quality
from core.artifacts import CARD_FILE
from core.atomic import atomic_write_bytes

log = logging.getLogger("benchmarks.recipes")
PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
# the options every classifier step of the production recipes shares (LP-FT, layer-wise LR decay)
MPNET = ("--base-model", "all-mpnet-base-v2")
LPFT = ("--head-init", "probe", "--layer-lr-decay", "0.9")
# the Twitter fine-tune's options, from mpnet (its own recipe) or as fpb50's intermediate task
TWITTER = ("--epochs", "2", "--max-length", "64", "--learning-rate", "3e-5", "--head-init", "random",
           "--layer-lr-decay", "0.9", "--max-train-minutes", "40")


@dataclass(frozen=True)
class Step:
    """One command of a recipe: ``module`` is ``domain_mlm`` or ``quality``; ``{name}`` in ``args``
    stands for the artifact folder of the earlier step ``name``."""

    name: str
    module: str
    args: tuple[str, ...]
    why: str

    def references(self) -> list[str]:
        return [m.group(1) for arg in self.args for m in PLACEHOLDER.finditer(arg)]

    def argv(self, artifacts: dict[str, str]) -> list[str]:
        return [PLACEHOLDER.sub(lambda m: artifacts[m.group(1)], arg) for arg in self.args]


# task -> the steps that made its production model (the closing notes of issue 3 give the figures)
RECIPES: dict[str, tuple[Step, ...]] = {
    "fpb50": (
        Step("dapt", "domain_mlm", ("--base-model", "all-mpnet-base-v2", "--corpus", "finance", "--epochs", "1"),
             "domain-adaptive MLM on PhraseBank and Twitter train text (about 22 min)"),
        Step("tapt", "domain_mlm", ("--base-model", "{dapt}", "--corpus", "phrasebank", "--epochs", "4",
                                    "--max-train-minutes", "40"),
             "task-adaptive MLM on PhraseBank 50Agree train text (about 32 min)"),
        Step("twitter_intermediate", "quality", ("--tasks", "twitter_fin", "--base-model", "{tapt}", *TWITTER),
             "intermediate task: Twitter financial sentiment, 8.6k more labelled sentences of the same three "
             "classes (about 24 min; its own model is Twitter's candidate too)"),
        Step("allagree", "quality", ("--tasks", "fpb_allagree", "--base-model", "{twitter_intermediate}/encoder",
                                     "--epochs", "3", "--max-length", "96", "--learning-rate", "3e-5", *LPFT,
                                     "--max-train-minutes", "30"),
             "AllAgree's unanimous labels next; its encoder starts the 50Agree fine-tune (about 9 min)"),
        Step("fpb50", "quality", ("--tasks", "fpb50", "--base-model", "{allagree}/encoder", "--epochs", "3",
                                  "--max-length", "96", "--learning-rate", "3e-5", *LPFT,
                                  "--max-train-minutes", "42", "--seed", "13", "--rdrop", "1.0"),
             "50Agree from the AllAgree encoder with R-Drop, seed 13 (the best dev figure of its runs; about 33 min)"),
    ),
    "fpb_allagree": (
        Step("fpb_allagree", "quality", ("--tasks", "fpb_allagree", *MPNET, "--epochs", "5", "--max-length", "96",
                                         "--learning-rate", "3e-5", *LPFT, "--max-train-minutes", "30"),
             "mpnet fine-tuned on AllAgree alone (about 15 min)"),
    ),
    "twitter_fin": (
        Step("twitter_fin", "quality", ("--tasks", "twitter_fin", *MPNET, *TWITTER),
             "mpnet, 2 epochs (about 25 min)"),
    ),
    "banking77": (
        Step("banking77", "quality", ("--tasks", "banking77", *MPNET, "--epochs", "3", "--max-length", "64",
                                      "--learning-rate", "4e-5", *LPFT, "--max-train-minutes", "40"),
             "mpnet with an LP-FT probe head (about 27 min)"),
    ),
}


def check_recipes(recipes: dict[str, tuple[Step, ...]]) -> None:
    """Every step names a known module, a name no other step has (``--reuse`` takes it), and only
    earlier steps of its own recipe."""
    names: set[str] = set()
    for recipe, steps in recipes.items():
        seen: list[str] = []
        for step in steps:
            if step.module not in STEP_MODULES:
                raise ValueError(f"recipe {recipe!r} step {step.name!r}: unknown module {step.module!r}, "
                                 f"expected one of {sorted(STEP_MODULES)}")
            if step.name in names:
                raise ValueError(f"recipe {recipe!r}: step name {step.name!r} is used twice")
            names.add(step.name)
            unknown = [ref for ref in step.references() if ref not in seen]
            if unknown:
                raise ValueError(f"recipe {recipe!r} step {step.name!r} refers to {unknown}, which are not "
                                 f"earlier steps of the recipe (those are {seen})")
            seen.append(step.name)


def run_domain_mlm(argv: list[str]) -> dict:
    result = domain_mlm.run(domain_mlm.parse_args(argv))
    return {"artifact": result["artifact"], "figures": result}


def run_quality(argv: list[str]) -> dict:
    results = quality.run(quality.parse_args(argv))
    (task, result), = results.items()  # every recipe step trains one task
    return {"artifact": result["artifact"], "figures": {task: result}}


STEP_MODULES: dict[str, Callable[[list[str]], dict]] = {"domain_mlm": run_domain_mlm, "quality": run_quality}


def step_argv(step: Step, artifacts: dict[str, str], registry: str | None, output: str) -> list[str]:
    """The step's command-line options, with earlier artifacts filled in and the shared registry and output."""
    argv = step.argv(artifacts)
    if registry:
        argv += ["--registry", registry]
    if step.module == "quality":
        argv += ["--output", output]
    return argv


def is_artifact(folder: str | Path) -> bool:
    """A complete artifact: ``write_artifact`` writes the card last, so a folder with one is whole."""
    return (Path(folder) / CARD_FILE).is_file()


def parse_reuse(values: list[str], recipes: list[str]) -> dict[str, str]:
    """``STEP=FOLDER`` pairs: an artifact that already exists stands in for that step."""
    steps = {step.name for recipe in recipes for step in RECIPES[recipe]}
    reuse = {}
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep or not folder:
            raise SystemExit(f"--reuse {value!r}: expected STEP=FOLDER, for example dapt=var/models/encoder-finance/v1")
        if name not in steps:
            raise SystemExit(f"--reuse {value!r}: no step {name!r} in {recipes}; their steps are {sorted(steps)}")
        if not is_artifact(folder):
            raise SystemExit(f"--reuse {value!r}: {folder} is not a model artifact (no {CARD_FILE} there)")
        reuse[name] = folder
    return reuse


class RecipeState:
    """The finished steps of one recipe (``recipe-<name>.json``): artifact, seconds and figures of each."""

    def __init__(self, path: Path):
        self.path = path
        self.steps: dict[str, dict] = json.loads(path.read_text())["steps"] if path.exists() else {}

    def recorded(self, step: str) -> str | None:
        """The artifact folder recorded for ``step``, whatever became of it since."""
        return self.steps.get(step, {}).get("artifact")

    def artifact(self, step: Step) -> str | None:
        """The recorded artifact of a finished step, if it is still there and was made with the
        step's options as the recipe now gives them (an edited step runs again)."""
        done = self.steps.get(step.name)
        if not done or not is_artifact(done["artifact"]):
            return None
        if not done.get("reused") and done.get("args") != list(step.args):
            log.info("step %r was recorded with other options than the recipe's; it runs again", step.name)
            return None
        return done["artifact"]

    def record(self, recipe: str, step: str, entry: dict) -> None:
        self.steps[step] = entry
        text = json.dumps({"recipe": recipe, "steps": self.steps}, indent=2)
        atomic_write_bytes(self.path, text.encode())


def run_recipe(recipe: str, registry: str | None, output: str, reuse: dict[str, str], restart: bool = False,
               dry_run: bool = False, modules: dict[str, Callable[[list[str]], dict]] = STEP_MODULES) -> dict:
    """Run the steps of ``recipe`` not yet finished; the state (artifact of each step) at the end."""
    state = RecipeState(Path(output).parent / f"recipe-{recipe}.json")
    if restart:
        state.steps = {}
    artifacts: dict[str, str] = {}
    changed = False  # a step ran or took another artifact: the recorded steps after it are stale
    steps = RECIPES[recipe]
    for number, step in enumerate(steps, 1):
        label = f"{recipe} step {number}/{len(steps)} {step.name!r}"
        if step.name in reuse:
            artifacts[step.name] = reuse[step.name]
            changed = changed or state.recorded(step.name) != reuse[step.name]
            log.info("%s: reusing %s (--reuse)", label, reuse[step.name])
            if not dry_run:
                state.record(recipe, step.name, {"artifact": reuse[step.name], "reused": True})
            continue
        if not changed and (done := state.artifact(step)) is not None:
            artifacts[step.name] = done
            log.info("%s: finished earlier, %s (%s)", label, done, state.path)
            continue
        changed = True
        argv = step_argv(step, artifacts, registry, output)
        command = shlex.join(["python", "-m", f"benchmarks.{step.module}", *argv])
        if dry_run:
            print(f"# {label}: {step.why}\n{command}")
            artifacts[step.name] = f"<{step.name}>"
            continue
        log.info("%s: %s\n  %s", label, step.why, command)
        started = time.monotonic()
        result = modules[step.module](argv)
        seconds = round(time.monotonic() - started, 1)
        artifacts[step.name] = result["artifact"]
        state.record(recipe, step.name, {"artifact": result["artifact"], "seconds": seconds, "command": command,
                                         "args": list(step.args), "figures": result["figures"]})
        log.info("%s: done in %.0f s, %s", label, seconds, result["artifact"])
    return state.steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.recipes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipes", nargs="*", metavar="RECIPE",
                        help=f"which production models to rebuild: {', '.join(RECIPES)} or all")
    parser.add_argument("--list", action="store_true", help="print the recipes and their steps, and stop")
    parser.add_argument("--dry-run", action="store_true", help="print the commands the run would make, and stop")
    parser.add_argument("--reuse", action="append", default=[], metavar="STEP=FOLDER",
                        help="an artifact you already have stands in for that step (repeatable)")
    parser.add_argument("--restart", action="store_true", help="run every step again, ignoring recorded ones")
    parser.add_argument("--registry", help="model registry root (default var/models)")
    parser.add_argument("--output", default=str(quality.BENCH_DIR / "quality.json"),
                        help="figures of the production models; recipe-<name>.json goes beside it")
    args = parser.parse_args(argv)
    if args.list or not args.recipes:
        for recipe, steps in RECIPES.items():
            print(f"{recipe}:")
            for step in steps:
                print(f"  {step.name}: {step.why}")
        return 0
    unknown = [r for r in args.recipes if r != "all" and r not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe(s) {unknown}: expected {', '.join(RECIPES)} or all")
    recipes = list(RECIPES) if "all" in args.recipes else list(dict.fromkeys(args.recipes))
    reuse = parse_reuse(args.reuse, recipes)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for recipe in recipes:
        run_recipe(recipe, args.registry, args.output, reuse, restart=args.restart, dry_run=args.dry_run)
    if not args.dry_run:
        print(f"production figures in {args.output}")
    return 0


check_recipes(RECIPES)

if __name__ == "__main__":
    sys.exit(main())
