"""The MLM corpora hold train text only; TAPT's is PhraseBank's alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import datasets, domain_mlm


def test_the_phrasebank_corpus_is_its_train_text_alone(phrasebank_files):
    texts, dev_texts, records = domain_mlm.corpus("phrasebank")
    splits = datasets.phrasebank("50Agree")
    assert texts == list(dict.fromkeys(splits["train"].texts))
    assert dev_texts == splits["dev"].texts
    assert [(Path(r["path"]).name, r["role"]) for r in records] == [
        ("Sentences_50Agree.txt", "train"), ("Sentences_50Agree.txt", "dev")]


def test_an_unknown_corpus_is_named(phrasebank_files):
    with pytest.raises(ValueError, match="'news'.*finance.*phrasebank"):
        domain_mlm.corpus("news")
