"""PhraseBank's four agreement files, small, in a datasets folder of their own."""

from __future__ import annotations

import pytest

FILES = {  # each stricter file holds a subset of the looser ones, as PhraseBank's do
    "50Agree": ["split votes@neutral", "most agree@positive", "two thirds@negative", "all agree@positive"],
    "66Agree": ["most agree@positive", "two thirds@negative", "all agree@positive"],
    "75Agree": ["most agree@positive", "all agree@positive"],
    "AllAgree": ["all agree@positive"],
}


@pytest.fixture()
def phrasebank_files(tmp_path, monkeypatch) -> None:
    """The four files in a datasets folder of their own, which TEXTML_DATASETS_DIR points to."""
    folder = tmp_path / "financial_phrasebank"
    folder.mkdir()
    for tier, lines in FILES.items():
        (folder / f"Sentences_{tier}.txt").write_text("\n".join(lines) + "\n", encoding="latin-1")
    monkeypatch.setenv("TEXTML_DATASETS_DIR", str(tmp_path))
