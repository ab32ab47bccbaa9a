"""PhraseBank's annotator agreement: each sentence gets the share of the strictest file that holds it."""

from __future__ import annotations

from pathlib import Path

from benchmarks import datasets


def test_phrasebank_agreement_comes_from_the_strictest_file(phrasebank_files):
    shares = datasets.phrasebank_agreement(["split votes", "two thirds", "most agree", "all agree"])
    assert shares == [0.5, 0.66, 0.75, 1.0]

    splits = datasets.phrasebank("50Agree", with_agreement=True)
    for split in splits.values():
        assert split.agreement == datasets.phrasebank_agreement(split.texts)
    assert all(split.agreement is None for split in datasets.phrasebank("50Agree").values())


def test_card_data_names_the_agreement_files_as_training_inputs(phrasebank_files):
    from dataclasses import replace

    from benchmarks import quality
    from core.artifacts import DATA_ROLES
    from core.finetune.classifier import ClassifierTrainingConfig

    splits = datasets.phrasebank("50Agree", with_agreement=True)

    plain = quality.card_data("fpb50", splits, ClassifierTrainingConfig())
    records = quality.card_data("fpb50", splits, replace(ClassifierTrainingConfig(), agreement_targets=True))
    assert [r["role"] for r in plain] == ["train", "dev", "test"]
    assert all(r["role"] in DATA_ROLES for r in records)
    tiers = ("66Agree", "75Agree", "AllAgree")
    assert {Path(r["path"]).name for r in records[3:]} == {f"Sentences_{t}.txt" for t in tiers}
