"""The production recipes (benchmarks.recipes): well-formed, and run in order, resumably."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks import domain_mlm, quality, recipes
from benchmarks.recipes import RECIPES, Step, check_recipes, parse_reuse, run_recipe

PARSERS = {"domain_mlm": domain_mlm.parse_args, "quality": quality.parse_args}


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_every_step_is_a_valid_command_of_its_module(recipe):
    artifacts = {step.name: f"var/models/{step.name}/v1" for step in RECIPES[recipe]}
    for step in RECIPES[recipe]:
        args = PARSERS[step.module](recipes.step_argv(step, artifacts, "reg", "out/quality.json"))
        assert args.registry == "reg"
        if step.module == "quality":
            assert args.tasks and len(args.tasks) == 1, "a quality step trains one task, so it has one artifact"
            assert args.output == "out/quality.json"


def test_the_50agree_chain_passes_each_fine_tunes_encoder_on():
    steps = {step.name: step for step in RECIPES["fpb50"]}
    argv = steps["fpb50"].argv({"allagree": "var/models/sentiment-fpb-allagree/v2"})
    assert argv[argv.index("--base-model") + 1] == "var/models/sentiment-fpb-allagree/v2/encoder"
    argv = steps["allagree"].argv({"twitter_intermediate": "var/models/sentiment-twitter/v2"})
    assert argv[argv.index("--base-model") + 1] == "var/models/sentiment-twitter/v2/encoder"
    argv = steps["twitter_intermediate"].argv({"tapt": "var/models/encoder-finance/v2"})
    assert argv[argv.index("--base-model") + 1] == "var/models/encoder-finance/v2"


@pytest.mark.parametrize("steps, message", [
    ((Step("a", "quality", ("--base-model", "{b}"), ""), Step("b", "quality", (), "")), "not earlier steps"),
    ((Step("a", "shell", (), ""),), "unknown module 'shell'"),
    ((Step("a", "quality", (), ""), Step("a", "quality", (), "")), "used twice"),
])
def test_malformed_recipes_are_refused(steps, message):
    with pytest.raises(ValueError, match=message):
        check_recipes({"r": steps})


def fake_modules(tmp_path: Path, calls: list):
    """Step runners that save an empty artifact (a folder with a card) and log their argv."""
    def runner(module):
        def run(argv):
            calls.append((module, argv))
            models = tmp_path / "models"
            models.mkdir(exist_ok=True)
            folder = models / f"v{len(list(models.iterdir())) + 1}"
            folder.mkdir()
            (folder / "card.json").write_text("{}")
            return {"artifact": str(folder), "figures": {"calls": len(calls)}}
        return run
    return {"domain_mlm": runner("domain_mlm"), "quality": runner("quality")}


def test_a_run_fills_in_artifacts_and_resumes_where_it_stopped(tmp_path):
    output = str(tmp_path / "bench" / "quality.json")
    calls = []
    modules = fake_modules(tmp_path, calls)
    state = run_recipe("fpb50", None, output, {}, modules=modules)
    assert [module for module, _ in calls] == ["domain_mlm", "domain_mlm", "quality", "quality", "quality"]
    tapt_argv = calls[1][1]
    assert tapt_argv[tapt_argv.index("--base-model") + 1] == state["dapt"]["artifact"]
    assert (tmp_path / "bench" / "recipe-fpb50.json").is_file()

    calls.clear()
    assert run_recipe("fpb50", None, output, {}, modules=modules) == state
    assert calls == [], "finished steps are not run again"

    # a step whose artifact is gone runs again, and so does every step after it
    (Path(state["allagree"]["artifact"]) / "card.json").unlink()
    run_recipe("fpb50", None, output, {}, modules=modules)
    assert [argv[argv.index("--tasks") + 1] for _, argv in calls] == ["fpb_allagree", "fpb50"]


def fpb50_with_allagree_edited() -> tuple:
    """The fpb50 recipe with another seed for its ``allagree`` step."""
    return tuple(replace(step, args=(*step.args, "--seed", "21")) if step.name == "allagree" else step
                 for step in RECIPES["fpb50"])


def test_an_edited_step_runs_again_and_so_do_the_steps_after_it(tmp_path, monkeypatch):
    output = str(tmp_path / "bench" / "quality.json")
    calls = []
    modules = fake_modules(tmp_path, calls)
    run_recipe("fpb50", None, output, {}, modules=modules)
    monkeypatch.setitem(recipes.RECIPES, "fpb50", fpb50_with_allagree_edited())
    calls.clear()
    state = run_recipe("fpb50", None, output, {}, modules=modules)
    assert [argv[argv.index("--tasks") + 1] for _, argv in calls] == ["fpb_allagree", "fpb50"]
    assert state["allagree"]["args"][-2:] == ["--seed", "21"]


def test_reusing_the_recorded_folder_of_an_edited_step_keeps_the_steps_after_it(tmp_path, monkeypatch):
    output = str(tmp_path / "bench" / "quality.json")
    calls = []
    modules = fake_modules(tmp_path, calls)
    first = run_recipe("fpb50", None, output, {}, modules=modules)
    monkeypatch.setitem(recipes.RECIPES, "fpb50", fpb50_with_allagree_edited())
    calls.clear()
    state = run_recipe("fpb50", None, output, {"allagree": first["allagree"]["artifact"]}, modules=modules)
    assert calls == [], "the later steps were made from this very folder"
    assert state["fpb50"] == first["fpb50"]


def test_reuse_stands_in_for_a_step_and_reruns_the_steps_after_it(tmp_path):
    output = str(tmp_path / "bench" / "quality.json")
    calls = []
    modules = fake_modules(tmp_path, calls)
    run_recipe("fpb50", None, output, {}, modules=modules)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "card.json").write_text("{}")
    calls.clear()
    state = run_recipe("fpb50", None, output, {"dapt": str(mine)}, modules=modules)
    assert state["dapt"] == {"artifact": str(mine), "reused": True}
    assert len(calls) == len(RECIPES["fpb50"]) - 1, "every step after the reused one runs again"
    assert calls[0][1][calls[0][1].index("--base-model") + 1] == str(mine)


def test_a_dry_run_trains_nothing_and_records_nothing(tmp_path, capsys):
    calls = []
    run_recipe("fpb50", None, str(tmp_path / "quality.json"), {}, dry_run=True,
               modules=fake_modules(tmp_path, calls))
    assert calls == [] and not (tmp_path / "recipe-fpb50.json").exists()
    assert "--base-model '<dapt>'" in capsys.readouterr().out


def test_bad_reuse_values_are_named(tmp_path):
    with pytest.raises(SystemExit, match="expected STEP=FOLDER"):
        parse_reuse(["dapt"], ["fpb50"])
    with pytest.raises(SystemExit, match="no step 'mlm'"):
        parse_reuse(["mlm=var/models/x"], ["fpb50"])
    with pytest.raises(SystemExit, match="not a model artifact"):
        parse_reuse([f"dapt={tmp_path}"], ["fpb50"])


def test_an_unknown_recipe_is_named(capsys):
    with pytest.raises(SystemExit):
        recipes.main(["fpb"])
    assert "unknown recipe(s) ['fpb']" in capsys.readouterr().err
