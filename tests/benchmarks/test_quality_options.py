"""The benchmark's command line reaches the fine-tune's config: what is asked is what trains."""

from __future__ import annotations

from benchmarks.quality import parse_args, training_setup


def test_rdrop_is_off_by_default_and_passed_down_when_asked() -> None:
    base, _ = training_setup(parse_args(["--tasks", "fpb50"]), None)
    assert base.rdrop == 0.0
    base, _ = training_setup(parse_args(["--tasks", "fpb50", "--rdrop", "1.0", "--seed", "7"]), None)
    assert (base.rdrop, base.seed) == (1.0, 7)


def test_ema_is_off_by_default_and_passed_down_when_asked() -> None:
    base, _ = training_setup(parse_args(["--tasks", "fpb50"]), None)
    assert base.ema == 0.0
    base, _ = training_setup(parse_args(["--tasks", "fpb50", "--ema", "0.99"]), None)
    assert base.ema == 0.99


def test_only_the_options_given_override_the_task_defaults() -> None:
    _, overrides = training_setup(parse_args(["--tasks", "fpb50", "--epochs", "3", "--label-smoothing", "0"]), None)
    assert overrides == {"epochs": 3, "label_smoothing": 0.0}
