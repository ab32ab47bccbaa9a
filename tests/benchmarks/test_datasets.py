"""PhraseBank's annotator agreement: each sentence gets the share of the strictest file that holds it."""

from __future__ import annotations

from benchmarks import datasets

FILES = {  # each stricter file holds a subset of the looser ones, as PhraseBank's do
    "50Agree": ["split votes@neutral", "most agree@positive", "two thirds@negative", "all agree@positive"],
    "66Agree": ["most agree@positive", "two thirds@negative", "all agree@positive"],
    "75Agree": ["most agree@positive", "all agree@positive"],
    "AllAgree": ["all agree@positive"],
}


def test_phrasebank_agreement_comes_from_the_strictest_file(tmp_path, monkeypatch):
    folder = tmp_path / "financial_phrasebank"
    folder.mkdir()
    for tier, lines in FILES.items():
        (folder / f"Sentences_{tier}.txt").write_text("\n".join(lines) + "\n", encoding="latin-1")
    monkeypatch.setenv("TEXTML_DATASETS_DIR", str(tmp_path))

    shares = datasets.phrasebank_agreement(["split votes", "two thirds", "most agree", "all agree"])
    assert shares == [0.5, 0.66, 0.75, 1.0]

    splits = datasets.phrasebank("50Agree", with_agreement=True)
    for split in splits.values():
        assert split.agreement == datasets.phrasebank_agreement(split.texts)
    assert all(split.agreement is None for split in datasets.phrasebank("50Agree").values())
