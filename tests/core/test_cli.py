"""``python -m core``: bad input is refused with one clear message before any model loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.cli import build_parser, main


def _csv(path: Path, header: str, rows: list[str]) -> str:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return str(path)


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    code = main(["--registry", "unused-registry", *argv])
    captured = capsys.readouterr()
    return code, captured.err + captured.out


@pytest.fixture()
def good(tmp_path: Path) -> dict[str, str]:
    rows = ["shares rose sharply,positive", "profit fell badly,negative", "the meeting is on monday,neutral"] * 3
    return {"train": _csv(tmp_path / "train.csv", "text,label", rows),
            "dev": _csv(tmp_path / "dev.csv", "text,label", rows[:3])}


def _train(good: dict[str, str], **override: str) -> list[str]:
    files = {**good, **override}
    argv = ["train", "classifier", "--train", files["train"], "--dev", files["dev"], "--name", "s"]
    return argv + (["--test", files["test"]] if "test" in files else []) + list(files.get("extra", ()))


def test_missing_column_is_named(tmp_path: Path, good: dict, capsys: pytest.CaptureFixture) -> None:
    bad = _csv(tmp_path / "bad.csv", "sentence,label", ["good,positive", "bad,negative"])
    code, out = _run(capsys, *_train(good, train=bad))
    assert code == 1
    assert "text" in out and "sentence" in out and "bad.csv" in out


def test_empty_text_row_is_named(tmp_path: Path, good: dict, capsys: pytest.CaptureFixture) -> None:
    bad = _csv(tmp_path / "bad.csv", "text,label", ["good,positive", ",negative", "bad,negative"])
    code, out = _run(capsys, *_train(good, train=bad))
    assert code == 1 and "bad.csv" in out and "2" in out


def test_label_unseen_in_train_is_refused(tmp_path: Path, good: dict, capsys: pytest.CaptureFixture) -> None:
    test = _csv(tmp_path / "test.csv", "text,label", ["a merger was announced,takeover"])
    code, out = _run(capsys, *_train(good, test=test))
    assert code == 1 and "takeover" in out and "test.csv" in out


def test_single_class_dataset_is_refused(tmp_path: Path, good: dict, capsys: pytest.CaptureFixture) -> None:
    one = _csv(tmp_path / "one.csv", "text,label", ["up,positive", "higher,positive"])
    code, out = _run(capsys, *_train(good, train=one, dev=one))
    assert code == 1 and "positive" in out and "one.csv" in out


def test_unresolvable_model_reference_is_named(good: dict, capsys: pytest.CaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out = _run(capsys, *_train(good), "--base-model", "no-such-org/no-such-model")
    assert code == 1 and "no-such-org/no-such-model" in out


def test_invalid_option_is_named(good: dict, capsys: pytest.CaptureFixture) -> None:
    code, out = _run(capsys, *_train(good), "--epochs", "0")
    assert code == 1 and "epochs=0" in out


def test_corrupt_artifact_is_refused(tmp_path: Path, good: dict, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "card.json").write_text("{not json", encoding="utf-8")
    code, out = _run(capsys, "eval", str(folder), "--data", good["dev"])
    assert code == 1 and str(folder) in out


def test_unknown_model_name_lists_nothing_found(tmp_path: Path, good: dict, capsys: pytest.CaptureFixture) -> None:
    code = main(["--registry", str(tmp_path / "empty"), "eval", "sentiment", "--data", good["dev"]])
    out = capsys.readouterr().err
    assert code == 1 and "sentiment" in out


def test_models_list_on_an_empty_registry(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--registry", str(tmp_path / "empty"), "models", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_every_training_option_is_documented() -> None:
    parser = build_parser()
    for task in ("classifier", "embedder", "reranker"):
        with pytest.raises(SystemExit):
            parser.parse_args(["train", task, "--help"])


def test_agreement_targets_need_an_agreement_column(good: dict, capsys: pytest.CaptureFixture) -> None:
    code, out = _run(capsys, *_train(good, extra=["--agreement-targets"]))
    assert code == 1 and "--agreement-column" in out


def test_bad_agreement_value_is_named(tmp_path: Path, good: dict, capsys: pytest.CaptureFixture) -> None:
    bad = _csv(tmp_path / "votes.csv", "text,label,share", ["up,positive,1.0", "down,negative,most"])
    code, out = _run(capsys, *_train(good, train=bad, extra=["--agreement-targets", "--agreement-column", "share"]))
    assert code == 1 and "votes.csv" in out and "row 2" in out and "'most'" in out and "(0, 1]" in out


@pytest.mark.parametrize("given", [["--teacher", "sentiment"], ["--unlabelled", "news.csv"]])
def test_distillation_needs_teachers_and_unlabelled_text(given: list[str], good: dict,
                                                         capsys: pytest.CaptureFixture) -> None:
    code, out = _run(capsys, *_train(good, extra=given))
    assert code == 1 and "--teacher" in out and "--unlabelled" in out


def test_an_unknown_teacher_is_named(good: dict, capsys: pytest.CaptureFixture) -> None:
    code, out = _run(capsys, *_train(good, extra=["--teacher", "no-such-model:3", "--unlabelled", good["dev"]]))
    assert code == 1 and "no-such-model" in out


def test_unlabelled_text_that_is_all_dev_text_is_refused(tmp_path: Path, good: dict,
                                                         capsys: pytest.CaptureFixture) -> None:
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    code, out = _run(capsys, *_train(good, extra=["--teacher", str(teacher), "--unlabelled", good["dev"]]))
    assert code == 1 and "dev.csv: no text left that is not in --dev/--test" in out
