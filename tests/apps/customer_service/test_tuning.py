"""Thresholds tuned on dev reach the bot only for the models they were tuned for (no Rasa run, no models)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from apps.customer_service.rasa_project import assemble, needs_training, trained_config
from apps.customer_service.retrieval import Thresholds
from apps.customer_service.settings import BotSettings, settings_from_env
from apps.customer_service.tuning import TunedFileError, import_bench_fallback, record_intent_fallback, record_retrieval


@pytest.fixture
def models(tmp_path: Path) -> dict[str, Path]:
    found = {}
    for name in ("classifier", "other-classifier", "embedder", "reranker"):
        found[name] = tmp_path / "models" / name
        found[name].mkdir(parents=True)
    return found


def env_for(tmp_path: Path, tuned: Path, **extra: str) -> dict[str, str]:
    return {"TEXTML_VAR_DIR": str(tmp_path / "var"), "CS_TUNED_FILE": str(tuned), "CS_STATE_DIR": str(tmp_path),
            **extra}


def test_tuned_thresholds_apply_to_their_models_only(tmp_path: Path, models: dict[str, Path]) -> None:
    tuned = tmp_path / "tuned.json"
    record_intent_fallback(tuned, str(models["classifier"]), 0.5170000195, precision=0.95, coverage=0.9655)
    record_retrieval(tuned, str(models["embedder"]), str(models["reranker"]), answer=0.61, clarify=0.12)
    assert json.loads(tuned.read_text())["intent_fallback"]["threshold"] == 0.517

    matching = settings_from_env(env_for(tmp_path, tuned, CS_INTENT_MODEL=str(models["classifier"]),
                                         CS_EMBEDDER=str(models["embedder"]), CS_RERANKER=str(models["reranker"])))
    assert matching.intent_fallback == 0.517
    assert matching.retrieval.rerank == Thresholds(answer=0.61, clarify=0.12)
    assert matching.threshold_sources["intent_fallback"].startswith("tuned on dev")
    assert matching.threshold_sources["retrieval"].startswith("tuned on dev")

    # another classifier, or the same embedder without its re-ranker: the defaults, said so
    other = settings_from_env(env_for(tmp_path, tuned, CS_INTENT_MODEL=str(models["other-classifier"]),
                                      CS_EMBEDDER=str(models["embedder"]), CS_RERANKER="none"))
    assert other.intent_fallback == BotSettings().intent_fallback
    assert other.retrieval.cosine == BotSettings().retrieval.cosine
    assert other.threshold_sources == {"intent_fallback": "default", "retrieval": "default"}

    # environment variables win over the tuned values
    forced = settings_from_env(env_for(tmp_path, tuned, CS_INTENT_MODEL=str(models["classifier"]),
                                       CS_FALLBACK_THRESHOLD="0.4"))
    assert forced.intent_fallback == 0.4 and "CS_FALLBACK_THRESHOLD" in forced.threshold_sources["intent_fallback"]


def test_bad_tuned_values_and_files_are_named(tmp_path: Path) -> None:
    tuned = tmp_path / "tuned.json"
    with pytest.raises(ValueError, match="1.5 is not a probability"):
        record_intent_fallback(tuned, "m", 1.5)
    with pytest.raises(ValueError, match="clarify threshold 0.7 is above the answer threshold 0.5"):
        record_retrieval(tuned, "e", None, answer=0.5, clarify=0.7)
    tuned.write_text("{not json")
    with pytest.raises(TunedFileError, match=f"{tuned}: not readable JSON"):
        settings_from_env(env_for(tmp_path, tuned))
    with pytest.raises(ValueError, match="CS_FALLBACK_THRESHOLD='2' is not a probability"):
        settings_from_env(env_for(tmp_path, tmp_path / "missing.json", CS_FALLBACK_THRESHOLD="2"))


def test_assembled_config_carries_the_fallback_threshold_and_retrains_on_change(tmp_path: Path) -> None:
    settings = BotSettings(state_dir=tmp_path, intent_fallback=0.517,
                           threshold_sources={"intent_fallback": "tuned on dev (x)", "retrieval": "default"})
    project = assemble(settings)
    config = yaml.safe_load((project / "config.yml").read_text())
    fallback = next(step for step in config["pipeline"] if step["name"] == "FallbackClassifier")
    assert fallback["threshold"] == 0.517
    assert "0.517: tuned on dev (x)" in (project / "config.yml").read_text().splitlines()[0]

    assert needs_training(settings, project)  # no model yet
    model = tmp_path / "rasa" / "models" / "bot.tar.gz"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"model")
    trained_config(settings).write_text((project / "config.yml").read_text())
    assert not needs_training(settings, project)
    changed = BotSettings(state_dir=tmp_path, intent_fallback=0.35)
    assert needs_training(changed, assemble(changed))


def test_import_from_bench_figures(tmp_path: Path, models: dict[str, Path]) -> None:
    figures = tmp_path / "bot.json"
    figures.write_text(json.dumps({"intent_model": str(models["classifier"]),
                                   "fallback_threshold_dev": {"answer": 0.517, "answer_coverage": 0.9655}}))
    tuned = tmp_path / "tuned.json"
    entry = import_bench_fallback(figures, tuned)
    assert entry["threshold"] == 0.517 and entry["model"] == str(models["classifier"])
    settings = settings_from_env(env_for(tmp_path, tuned, CS_INTENT_MODEL=str(models["classifier"])))
    assert settings.intent_fallback == 0.517
    figures.write_text(json.dumps({"intent_accuracy_core": 0.93}))
    with pytest.raises(TunedFileError, match="no intent_model / fallback_threshold_dev.answer"):
        import_bench_fallback(figures, tuned)


def test_intent_fusion_round_trip_applies_only_with_its_classifier(tmp_path: Path, models: dict[str, Path]) -> None:
    from apps.customer_service.tuning import fusion_entry

    tuned = tmp_path / "tuned.json"
    fusion = fusion_entry(str(models["classifier"]), 1.0, answer=1.31, clarify=0.92, method="finetuned_rerank_intent")
    record_retrieval(tuned, str(models["embedder"]), str(models["reranker"]), answer=0.61, clarify=0.12,
                     rerank_weight=0.75, fusion=fusion)
    stored = json.loads(tuned.read_text())["retrieval"]["fusion"]
    assert stored == {"intent_model": str(models["classifier"]), "intent_weight": 1.0, "answer": 1.31,
                      "clarify": 0.92, "method": "finetuned_rerank_intent"}

    all_three = settings_from_env(env_for(tmp_path, tuned, CS_INTENT_MODEL=str(models["classifier"]),
                                          CS_EMBEDDER=str(models["embedder"]), CS_RERANKER=str(models["reranker"])))
    assert all_three.retrieval.intent_weight == 1.0
    assert all_three.retrieval.fused == Thresholds(answer=1.31, clarify=0.92)
    assert all_three.retrieval.rerank == Thresholds(answer=0.61, clarify=0.12)
    assert all_three.threshold_sources["intent_fusion"].startswith("tuned on dev")

    # another classifier: the retrieval entry still applies, the fusion stays off
    other = settings_from_env(env_for(tmp_path, tuned, CS_INTENT_MODEL=str(models["other-classifier"]),
                                      CS_EMBEDDER=str(models["embedder"]), CS_RERANKER=str(models["reranker"])))
    assert other.retrieval.rerank == Thresholds(answer=0.61, clarify=0.12)
    assert other.retrieval.intent_weight == 0.0 and "intent_fusion" not in other.threshold_sources
    # the classifier but another re-ranker (none): nothing of the entry applies
    no_reranker = settings_from_env(env_for(tmp_path, tuned, CS_INTENT_MODEL=str(models["classifier"]),
                                            CS_EMBEDDER=str(models["embedder"]), CS_RERANKER="none"))
    assert no_reranker.retrieval.intent_weight == 0.0

    with pytest.raises(ValueError, match="intent_weight=0.0; a recorded fusion needs a weight > 0"):
        fusion_entry("m", 0.0, answer=1.0, clarify=0.5)
    with pytest.raises(ValueError, match="clarify threshold 2.0 is above"):
        fusion_entry("m", 1.0, answer=1.0, clarify=2.0)
