"""The scope model on the real MiniLM embedder: calibration, thresholds, decisions, files, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from apps.customer_service.scope import (
    ScopeModel,
    ScopeModelError,
    ScopeThresholds,
    budget_threshold,
    fit_scope,
    looks_like_text,
)
from apps.customer_service.scope_training import ScopeDataError, load_scope_data, read_column, small_talk
from apps.customer_service.settings import APP_DIR

BANKING = ["my card hasn't arrived yet", "how do I top up by bank transfer", "why was I charged a fee for cash",
           "I lost my card", "what exchange rate do you use", "my transfer is still pending",
           "can I get a virtual card", "how do I change my PIN", "the ATM kept my card", "my payment was declined",
           "is there a fee for topping up", "how long does a transfer take", "I want to close my account",
           "someone used my card without permission", "can I pay in another currency"]
DEV_IN = ["where is my new card", "top up with a bank transfer, how?", "a cash withdrawal fee was charged",
          "my card is lost", "why was my card payment refused", "how can I change the pin"]
DEV_OUT = ["what's the weather tomorrow", "tell me a joke", "how do I cook rice", "who won the world cup in 2010",
           "set an alarm for 7 am", "play some jazz music", "how tall is mount everest", "translate hello to french"]


@pytest.fixture(scope="module")
def model(embedder) -> ScopeModel:
    return fit_scope(embedder.encode, "all-MiniLM-L6-v2", BANKING, DEV_IN, DEV_OUT, in_budget=0.2,
                     decline_budget=0.2, data={"test": True})


def test_decisions_separate_banking_from_everything_else(model: ScopeModel, embedder) -> None:
    texts = ["my card still has not arrived", "what is the capital of peru", "\x00\x01\x02\x03 binary",
             "%%%% 1234 #### 5678", "please remind me to call mum"]
    decisions = model.decide(texts, embedder.encode)
    assert [d.decision for d in decisions] == ["in", "out", "out", "out", "out"]
    assert decisions[2].reason == decisions[3].reason == "not_text" and decisions[2].to_dict()["nearest"] is None
    assert decisions[0].p_out < 0.5 < decisions[1].p_out
    assert all(0.0 <= d.p_out <= 1.0 for d in decisions)


def test_thresholds_keep_the_budgets_on_dev(model: ScopeModel) -> None:
    limits, figures = model.card.thresholds, model.card.figures
    assert 0.0 <= limits.unsure <= limits.decline <= 1.0 and limits.decline >= 0.5
    # the budget holds, unless declining needs even odds (p_out >= 0.5) and more than the budget reach them
    assert figures["dev_in_declined"] <= max(0.2, figures["dev_in_even_odds"])
    assert figures["dev_in_flagged"] <= max(0.2, figures["dev_in_declined"])
    assert figures["dev_out_recall"] >= 0.75
    assert model.card.slope < 0  # the closer to a known question, the less likely out of scope
    assert model.decision(limits.decline) == "out" and model.decision(limits.unsure) in ("unsure", "out")
    assert model.decision(0.0) == "in"


def test_save_and_load_round_trip(model: ScopeModel, embedder, tmp_path) -> None:
    model.save(tmp_path / "scope")
    again = ScopeModel.load(tmp_path / "scope")
    assert again.card == model.card
    vectors = embedder.encode(["my transfer is pending"])
    assert np.allclose(again.nearest(vectors), model.nearest(vectors))


def test_bad_files_and_values_are_named(model: ScopeModel, tmp_path) -> None:
    with pytest.raises(ScopeModelError, match="scope train"):
        ScopeModel.load(tmp_path / "nowhere")
    model.save(tmp_path / "broken")
    (tmp_path / "broken" / "scope.json").write_text(json.dumps({"embedder": "x"}))
    with pytest.raises(ScopeModelError, match="readable scope model"):
        ScopeModel.load(tmp_path / "broken")
    with pytest.raises(ScopeModelError, match="expected \\(n, 384\\)"):
        model.nearest(np.zeros((1, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="unsure=0.9, decline=0.5"):
        ScopeThresholds(decline=0.5, unsure=0.9)
    with pytest.raises(ValueError, match="dev_out is empty"):
        fit_scope(lambda texts: np.zeros((len(texts), 3)), "x", ["a"], ["b"], [])


def test_budget_threshold_counts_ties() -> None:
    p = np.array([0.9, 0.9, 0.9, 0.2, 0.1, 0.1, 0.0, 0.0, 0.0, 0.0])
    assert budget_threshold(p, 0.1) > 0.9  # one allowed, but three tie at the top: none flagged
    assert 0.2 < budget_threshold(p, 0.3) <= 0.9 and np.mean(p >= budget_threshold(p, 0.3)) == 0.3
    assert budget_threshold(p, 1.0) == 0.0


def test_looks_like_text() -> None:
    assert looks_like_text("Wo ist meine Karte?") and looks_like_text("カードが届きません")
    assert not looks_like_text("") and not looks_like_text("   ") and not looks_like_text("12345 678 90")
    assert not looks_like_text("card\x00\x07") and not looks_like_text("\ufffd\ufffd card")


def test_training_data_reads_train_and_dev_splits_only(tmp_path) -> None:
    datasets = tmp_path / "datasets"
    (datasets / "banking77").mkdir(parents=True)
    (datasets / "clinc150_oos").mkdir()
    rows = [f"question number {i}" for i in range(40)]
    (datasets / "banking77" / "train.csv").write_text("text,category\n" + "".join(f"{r},x\n" for r in rows))
    (datasets / "clinc150_oos" / "oos_train.csv").write_text("text\nwhat's the weather\n")
    data = load_scope_data(datasets, APP_DIR / "knowledge")
    assert data.dev_out == ["what's the weather"] and data.dev_in and not set(data.dev_in) & set(data.reference)
    assert set(data.dev_in) | {r for r in data.reference if r in rows} == set(rows)
    assert "hello" in data.reference and "tell me a joke" not in small_talk()  # nlu.yml's out_of_scope stays out
    with pytest.raises(ScopeDataError, match="TEXTML_DATASETS_DIR"):
        load_scope_data(tmp_path / "missing", APP_DIR / "knowledge")
    with pytest.raises(ScopeDataError, match="no 'utterance' column \\(columns: text, category\\)"):
        read_column(datasets / "banking77" / "train.csv", "utterance")
