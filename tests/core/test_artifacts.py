"""Artifacts: the card round-trips, writes are all-or-nothing, and bad artifacts name their path."""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import datetime
from pathlib import Path

import pytest

from core.artifacts import (
    CARD_FILE,
    ArtifactError,
    ModelCard,
    check_artifact,
    data_record,
    library_versions,
    read_card,
    sha256_file,
    update_card,
    write_artifact,
)


def make_card(**overrides) -> ModelCard:
    fields = {
        "name": "intents",
        "task": "classifier",
        "base_model": "all-MiniLM-L6-v2",
        "hyperparameters": {"lr": 2e-5, "epochs": 3},
        "metrics": {"dev": {"accuracy": 0.9, "macro_f1": 0.85}},
        "labels": ["billing", "card", "other"],
    }
    return ModelCard(**{**fields, **overrides})


def save_weights(folder: Path) -> None:
    (folder / "model.safetensors").write_bytes(b"\x00" * 16)
    (folder / "tokenizer.json").write_text("{}")


def test_card_round_trips_through_json(tmp_path: Path) -> None:
    (tmp_path / "dev.csv").write_text("text,label\nhi,card\n")
    card = make_card(data=[data_record(tmp_path / "dev.csv", "dev")], notes=[{"event": "x"}], extra={"k": [1, 2]})
    again = ModelCard.from_dict(json.loads(json.dumps(card.to_dict())))
    assert again == card


def test_card_defaults_record_time_and_libraries() -> None:
    card = make_card()
    assert datetime.fromisoformat(card.created_at).utcoffset().total_seconds() == 0
    assert card.library_versions["python"].count(".") == 2
    assert "numpy" in card.library_versions
    assert set(library_versions()) <= {
        "python",
        "torch",
        "transformers",
        "sentence-transformers",
        "peft",
        "faiss",
        "numpy",
        "scikit-learn",
    }


def test_unknown_task_is_refused_with_the_choices() -> None:
    with pytest.raises(ArtifactError, match=r"'regressor'.*classifier, embedder, reranker"):
        make_card(task="regressor")


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (lambda d: d.pop("base_model"), "missing the key.*'base_model'"),
        (lambda d: d.update(metrics=[1]), "'metrics' is \\[1\\]"),
        (lambda d: d.update(version="3"), "'version' is '3'"),
        (lambda d: d.update(labels=[0, 1]), "'labels'"),
        (lambda d: d.update(data=[{"role": "validation", "sha256": "x"}]), "role"),
        (lambda d: d.update(colour="red"), "unknown key.*'colour'.*extra"),
    ],
)
def test_from_dict_names_the_bad_key(change, pattern: str) -> None:
    raw = make_card().to_dict()
    change(raw)
    with pytest.raises(ArtifactError, match=pattern):
        ModelCard.from_dict(raw)


def test_data_record_hashes_and_counts_rows(tmp_path: Path) -> None:
    csv_file = tmp_path / "train.csv"
    csv_file.write_text('text,label\n"two\nlines",a\nb,b\n\n')
    jsonl_file = tmp_path / "dev.jsonl"
    jsonl_file.write_text('{"text": "a"}\n{"text": "b"}\n\n{"text": "c"}\n')
    record = data_record(csv_file, "train")
    assert record == {
        "role": "train",
        "path": str(csv_file),
        "sha256": hashlib.sha256(csv_file.read_bytes()).hexdigest(),
        "rows": 2,
    }
    assert sha256_file(csv_file) == record["sha256"]
    assert data_record(jsonl_file, "dev")["rows"] == 3
    assert data_record(jsonl_file, "dev", rows=10)["rows"] == 10


def test_data_record_rejects_bad_role_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="'validation'.*train, dev, test"):
        data_record(tmp_path / "x.csv", "validation")
    with pytest.raises(ArtifactError, match="nope.csv does not exist"):
        data_record(tmp_path / "nope.csv", "dev")


def test_write_artifact_writes_the_card_last(tmp_path: Path) -> None:
    seen = []

    def save(folder: Path) -> None:
        seen.append((folder / CARD_FILE).exists())
        save_weights(folder)

    target = write_artifact(tmp_path / "m" / "v1", save, make_card())
    assert seen == [False]
    assert sorted(p.name for p in target.iterdir()) == [CARD_FILE, "model.safetensors", "tokenizer.json"]
    assert read_card(target) == make_card(created_at=read_card(target).created_at)
    assert os.listdir(tmp_path / "m") == ["v1"]


def test_failure_inside_save_leaves_nothing(tmp_path: Path) -> None:
    def save(folder: Path) -> None:
        save_weights(folder)
        raise RuntimeError("out of disk")

    with pytest.raises(RuntimeError, match="out of disk"):
        write_artifact(tmp_path / "m" / "v1", save, make_card())
    assert os.listdir(tmp_path / "m") == []


def test_crash_at_the_rename_leaves_nothing_partial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(src, dst):
        raise OSError("simulated crash during rename")

    monkeypatch.setattr(os, "rename", crash)
    with pytest.raises(OSError, match="simulated crash"):
        write_artifact(tmp_path / "m" / "v1", save_weights, make_card())
    assert os.listdir(tmp_path / "m") == []


def test_save_may_not_write_the_card_itself(tmp_path: Path) -> None:
    def save(folder: Path) -> None:
        (folder / CARD_FILE).write_text("{}")

    with pytest.raises(ArtifactError, match="wrote card.json"):
        write_artifact(tmp_path / "v1", save, make_card())
    assert os.listdir(tmp_path) == []


def test_bad_card_fails_before_save_runs(tmp_path: Path) -> None:
    card = make_card()
    card.metrics = {"dev": {"macro_f1": object()}}
    with pytest.raises(ArtifactError, match="cannot be stored as JSON"):
        write_artifact(tmp_path / "v1", lambda folder: pytest.fail("save ran"), card)


def test_read_card_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=re.escape(f"artifact folder {tmp_path / 'absent'} does not exist")):
        read_card(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match=re.escape(f"{tmp_path / 'empty'} has no card.json")):
        read_card(tmp_path / "empty")
    artifact = write_artifact(tmp_path / "v1", save_weights, make_card())
    (artifact / CARD_FILE).write_text('{"name": "intents",')
    with pytest.raises(ArtifactError, match=re.escape(f"{artifact / CARD_FILE} is not valid JSON")):
        read_card(artifact)
    (artifact / CARD_FILE).write_text('{"name": "intents", "task": "classifier"}')
    with pytest.raises(
        ArtifactError, match=re.escape(f"{artifact / CARD_FILE}: card is missing the key(s) 'base_model'")
    ):
        check_artifact(artifact)


def test_check_artifact_names_the_missing_file(tmp_path: Path) -> None:
    artifact = write_artifact(tmp_path / "v1", save_weights, make_card())
    assert check_artifact(artifact, ["model.safetensors", "tokenizer.json"]).name == "intents"
    (artifact / "model.safetensors").unlink()
    with pytest.raises(ArtifactError, match=re.escape(f"corrupt artifact {artifact}: missing model.safetensors")):
        check_artifact(artifact, ["model.safetensors", "tokenizer.json"])


def test_update_card_persists_and_keeps_the_old_card_on_error(tmp_path: Path) -> None:
    artifact = write_artifact(tmp_path / "v1", save_weights, make_card())
    updated = update_card(artifact, lambda card: card.notes.append({"event": "checked"}))
    assert updated.notes == [{"event": "checked"}]
    assert read_card(artifact).notes == [{"event": "checked"}]

    def break_it(card: ModelCard) -> None:
        card.task = "regressor"

    with pytest.raises(
        ArtifactError, match=re.escape(f"updating {artifact / CARD_FILE}: card field 'task' is 'regressor'")
    ):
        update_card(artifact, break_it)
    assert read_card(artifact).task == "classifier"
    assert sorted(p.name for p in artifact.iterdir()) == [CARD_FILE, "model.safetensors", "tokenizer.json"]
