import json
from pathlib import Path

import pytest

from apps.recommender.cli import build_parser, main

from .conftest import DEMO


def test_every_command_has_help() -> None:
    parser = build_parser()
    for command in ("serve", "load", "recommend", "similar", "delete", "demo", "keys", "keys create", "keys list",
                    "keys revoke"):
        with pytest.raises(SystemExit) as done:
            parser.parse_args([*command.split(), "--help"])
        assert done.value.code == 0


def test_load_then_recommend_as_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = ["--store", str(tmp_path / "store"), "--embedder", "hashing", "--log-level", "WARNING"]
    assert main([*base, "load", str(DEMO / "items.jsonl"), "--interactions", str(DEMO / "interactions.csv")]) == 0
    capsys.readouterr()
    assert main([*base, "recommend", "--history", "kit-003,nope", "--k", "3", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert len(body["items"]) == 3 and body["unknown_ids"] == ["nope"]


def test_bad_file_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "items.csv"
    bad.write_text("id,title,price\nx,Thing,-2\n", encoding="utf-8")
    code = main(["--store", str(tmp_path / "store"), "--embedder", "hashing", "--log-level", "WARNING", "load",
                 str(bad)])
    assert code == 2
    assert "row 1 field 'price'" in capsys.readouterr().err


def test_demo_prints_explanations(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--store", str(tmp_path / "demo"), "--embedder", "hashing", "--log-level", "WARNING", "demo"]) == 0
    out = capsys.readouterr().out
    assert "from your history" in out and "showing popular items" in out and "new-001" in out
