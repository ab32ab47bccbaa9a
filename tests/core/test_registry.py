"""Registry: versions increment (also under concurrency), references resolve, promotion follows the rule."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest

from core.artifacts import ArtifactError, ModelCard, data_record, read_card
from core.registry import ModelNotFoundError, PromotionResult, Registry, default_registry_root


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "models")


@pytest.fixture
def dev_set(tmp_path: Path) -> Path:
    path = tmp_path / "dev.csv"
    path.write_text("text,label\nreset my pin,card\nrefund please,billing\n")
    return path


def save_weights(folder: Path) -> None:
    (folder / "model.safetensors").write_bytes(b"\x01\x02")


def card(dev: Path | None, macro_f1: float | None = 0.8) -> ModelCard:
    return ModelCard(
        name="ignored",
        task="classifier",
        base_model="all-MiniLM-L6-v2",
        data=[data_record(dev, "dev")] if dev else [],
        metrics={"dev": {} if macro_f1 is None else {"macro_f1": macro_f1, "accuracy": 0.9}},
    )


def add(registry: Registry, dev: Path | None, macro_f1: float | None = 0.8, name: str = "intents") -> int:
    model_card = card(dev, macro_f1)
    registry.save(name, save_weights, model_card)
    return model_card.version


def test_default_root_reads_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TEXTML_MODEL_DIR", str(tmp_path / "elsewhere"))
    assert default_registry_root() == tmp_path / "elsewhere"
    assert Registry().root == tmp_path / "elsewhere"
    monkeypatch.delenv("TEXTML_MODEL_DIR")
    assert default_registry_root() == Path(__file__).resolve().parents[2] / "var" / "models"


def test_versions_increment_and_cards_are_filled(registry: Registry, dev_set: Path) -> None:
    saved = card(dev_set)
    folder = registry.save("intents", save_weights, saved)
    assert folder == registry.root / "intents" / "v1"
    assert (saved.name, saved.version) == ("intents", 1)
    assert read_card(folder).version == 1
    add(registry, dev_set)
    add(registry, dev_set, name="sentiment")
    assert registry.versions("intents") == [1, 2]
    assert registry.names() == ["intents", "sentiment"]
    assert [(c.name, c.version) for c in registry.cards()] == [("intents", 1), ("intents", 2), ("sentiment", 1)]
    assert [c.version for c in registry.cards("intents")] == [1, 2]


def test_staging_leftovers_are_skipped(registry: Registry, dev_set: Path) -> None:
    add(registry, dev_set)
    (registry.root / "intents" / ".v2.tmp-abc123").mkdir()
    (registry.root / ".other.tmp-1").mkdir()
    (registry.root / "empty").mkdir()  # a name whose first save failed
    assert registry.versions("intents") == [1]
    assert registry.names() == ["intents"]
    assert add(registry, dev_set) == 2


@pytest.mark.parametrize("name", ["../escape", "a b", ".hidden", "", "x/y"])
def test_bad_names_are_refused(registry: Registry, dev_set: Path, name: str) -> None:
    with pytest.raises(ArtifactError, match=re.escape(f"model name {name!r} is not allowed")):
        registry.save(name, save_weights, card(dev_set))
    assert not registry.root.exists() or registry.names() == []


def test_concurrent_saves_get_distinct_versions(registry: Registry, dev_set: Path) -> None:
    start = threading.Barrier(4)
    versions: list[int] = []
    errors: list[BaseException] = []

    def slow_save(folder: Path) -> None:
        time.sleep(0.02)  # widen the window in which an unlocked registry would hand out one number twice
        save_weights(folder)

    def train() -> None:
        model_card = card(dev_set)
        start.wait()
        try:
            registry.save("intents", slow_save, model_card)
            versions.append(model_card.version)
        except BaseException as error:  # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=train) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(versions) == [1, 2, 3, 4]
    assert registry.versions("intents") == [1, 2, 3, 4]


def test_path_accepts_numbers_latest_and_aliases(registry: Registry, dev_set: Path) -> None:
    for _ in range(3):
        add(registry, dev_set)
    folder = registry.root / "intents"
    assert registry.path("intents", 2) == folder / "v2"
    assert registry.path("intents", "2") == folder / "v2"
    assert registry.path("intents", "v2") == folder / "v2"
    assert registry.path("intents", "latest") == folder / "v3"
    registry.set_alias("intents", "staging", 1)
    assert registry.path("intents", "staging") == folder / "v1"
    assert registry.aliases("intents") == {"staging": 1}
    registry.promote("intents", 3)
    assert registry.path("intents") == folder / "v3"
    assert registry.card("intents").version == 3


def test_missing_name_lists_the_models(registry: Registry, dev_set: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no model named 'intents'.*holds no models yet"):
        registry.path("intents")
    add(registry, dev_set, name="sentiment")
    with pytest.raises(ModelNotFoundError, match="no model named 'intents'.*models here: sentiment"):
        registry.card("intents", 1)


def test_missing_version_lists_versions_and_aliases(registry: Registry, dev_set: Path) -> None:
    add(registry, dev_set)
    add(registry, dev_set)
    registry.set_alias("intents", "staging", 2)
    with pytest.raises(ModelNotFoundError, match="no version 7.*versions: v1, v2; aliases: staging -> v2"):
        registry.path("intents", "v7")
    with pytest.raises(ModelNotFoundError, match="no 'canary' alias.*versions: v1, v2"):
        registry.path("intents", "canary")
    with pytest.raises(ModelNotFoundError, match="no version 9"):
        registry.set_alias("intents", "staging", 9)


def test_missing_production_alias_does_not_fall_back(registry: Registry, dev_set: Path) -> None:
    add(registry, dev_set)
    add(registry, dev_set)
    with pytest.raises(ModelNotFoundError) as caught:
        registry.path("intents")
    message = str(caught.value)
    assert "no 'production' alias" in message
    assert "versions: v1, v2" in message
    assert "`python -m core promote intents 2`" in message


def test_production_path_is_none_without_a_production_version(registry: Registry, dev_set: Path) -> None:
    assert registry.production_path("intents") is None  # no model at all
    add(registry, dev_set)
    assert registry.production_path("intents") is None  # a version, but none promoted
    registry.set_alias("intents", "production", 1)
    assert registry.production_path("intents") == registry.path("intents", 1)


def test_reserved_and_broken_aliases(registry: Registry, dev_set: Path) -> None:
    add(registry, dev_set)
    for alias in ("latest", "v2", "3", "a b"):
        with pytest.raises(ArtifactError, match=re.escape(f"alias {alias!r} is not allowed")):
            registry.set_alias("intents", alias, 1)
    aliases_file = registry.root / "intents" / "aliases.json"
    aliases_file.write_text("{not json")
    with pytest.raises(ArtifactError, match=re.escape(f"{aliases_file} is not valid JSON")):
        registry.aliases("intents")


def test_first_promotion_and_better_candidate(registry: Registry, dev_set: Path) -> None:
    add(registry, dev_set, 0.70)
    first = registry.promote("intents", 1)
    assert (first.promoted, first.version, first.previous) == (True, 1, None)
    assert "no production version yet" in first.reason
    add(registry, dev_set, 0.75)
    better = registry.promote("intents", 2)
    assert better == PromotionResult(True, 2, 1, "v2 dev macro_f1 0.7500 >= v1 0.7000 on the same dev set")
    assert registry.aliases("intents") == {"production": 2}
    assert registry.card("intents", 2).notes == []


def test_equal_score_promotes_the_newer_model(registry: Registry, dev_set: Path) -> None:
    add(registry, dev_set, 0.8)
    add(registry, dev_set, 0.8)
    registry.promote("intents", 1)
    assert registry.promote("intents", 2).promoted


def test_worse_candidate_is_refused_with_the_figures(registry: Registry, dev_set: Path) -> None:
    add(registry, dev_set, 0.80)
    add(registry, dev_set, 0.70)
    registry.promote("intents", 1)
    result = registry.promote("intents", 2)
    assert (result.promoted, result.version, result.previous) == (False, 2, 1)
    assert "v2 dev macro_f1 0.7000 < v1 0.8000" in result.reason
    assert "production stays v1" in result.reason
    assert registry.path("intents") == registry.root / "intents" / "v1"


def test_different_dev_set_is_refused(registry: Registry, dev_set: Path, tmp_path: Path) -> None:
    other = tmp_path / "dev2.csv"
    other.write_text("text,label\nsomething else,card\n")
    add(registry, dev_set, 0.70)
    add(registry, other, 0.95)
    registry.promote("intents", 1)
    result = registry.promote("intents", 2)
    assert not result.promoted
    assert "different dev set" in result.reason
    assert registry.aliases("intents") == {"production": 1}


def test_missing_metric_or_dev_record_is_refused(registry: Registry, dev_set: Path) -> None:
    add(registry, dev_set, 0.70)
    add(registry, dev_set, None)
    add(registry, None, 0.99)
    registry.promote("intents", 1)
    no_metric = registry.promote("intents", 2)
    assert not no_metric.promoted and "v2 has no numeric dev macro_f1" in no_metric.reason
    no_dev = registry.promote("intents", 3)
    assert not no_dev.promoted and "v3 record(s) no dev data" in no_dev.reason


def test_forced_promotion_is_recorded_and_rollback_works(registry: Registry, dev_set: Path) -> None:
    add(registry, dev_set, 0.80)
    add(registry, dev_set, 0.60)
    registry.promote("intents", 1)
    forced = registry.promote("intents", 2, force=True)
    assert (forced.promoted, forced.previous) == (True, 1)
    assert forced.reason.startswith("forced: v2 dev macro_f1 0.6000 < v1 0.8000")
    [note] = registry.card("intents", 2).notes
    assert note["event"] == "forced_promotion"
    assert (note["alias"], note["previous"], note["reason"]) == ("production", 1, forced.reason)
    assert note["at"]
    assert registry.path("intents") == registry.root / "intents" / "v2"

    # the old version is untouched and loadable; rolling back to it passes the rule (0.80 >= 0.60)
    assert registry.card("intents", 1).metrics["dev"]["macro_f1"] == 0.80
    assert (registry.path("intents", 1) / "model.safetensors").read_bytes() == b"\x01\x02"
    rollback = registry.promote("intents", "v1")
    assert (rollback.promoted, rollback.previous) == (True, 2)
    assert registry.card("intents").version == 1
    assert registry.card("intents", 1).notes == []
    assert registry.versions("intents") == [1, 2]


def test_forced_promotion_the_rule_allows_adds_no_note(registry: Registry, dev_set: Path) -> None:
    add(registry, dev_set, 0.70)
    add(registry, dev_set, 0.90)
    registry.promote("intents", 1)
    assert registry.promote("intents", 2, force=True).promoted
    assert registry.card("intents", 2).notes == []


def test_promoting_the_current_version_changes_nothing(registry: Registry, dev_set: Path) -> None:
    add(registry, dev_set)
    registry.promote("intents", 1)
    result = registry.promote("intents", 1)
    assert (result.promoted, result.previous) == (True, 1)
    assert "already production" in result.reason
