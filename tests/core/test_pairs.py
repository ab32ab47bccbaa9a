"""Training pairs: both file kinds load, labelled sampling is seeded and capped, bad data is named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.data.pairs import PairDataConfig, TextPairs, load_pairs, make_pairs, pairs_from_labelled
from core.data.tables import DataError
from tests.core.retrieval_data import labelled_split


def write_csv(path: Path, header: str, *lines: str) -> Path:
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_query_positive_csv_with_optional_negatives(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "pairs.csv", "query,positive,negative",
                     "reset my pin, How to change your PIN ,How to order a card",
                     "parcel is late,Delivery times,",
                     "card declined,Why payments fail,Delivery times")
    pairs = load_pairs(path)
    assert pairs.queries == ("reset my pin", "parcel is late", "card declined")
    assert pairs.positives == ("How to change your PIN", "Delivery times", "Why payments fail")  # stripped
    assert pairs.negatives == (("How to order a card",), (), ("Delivery times",))
    assert pairs.labels is None and pairs.source == str(path)
    assert pairs.corpus() == ["How to change your PIN", "Delivery times", "Why payments fail"]


def test_jsonl_with_custom_columns_and_negative_lists(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "pairs.jsonl", [
        {"q": "a question", "doc": "its answer", "hard": ["a near miss", "another"]},
        {"q": "a question", "doc": "a second answer", "hard": None},
        {"q": "other question", "doc": "other answer"},
    ])
    config = PairDataConfig(query_column="q", positive_column="doc", negative_column="hard")
    pairs = load_pairs(path, config)
    assert pairs.negatives == (("a near miss", "another"), (), ())
    # a query's positives are never negatives for it
    assert pairs.known_positives()["a question"] == {"its answer", "a second answer"}


def test_labelled_texts_become_same_label_pairs(tmp_path: Path) -> None:
    texts, labels = labelled_split("train")
    rows = [{"text": t, "label": y} for t, y in zip(texts, labels, strict=True)]
    path = write_jsonl(tmp_path / "labelled.jsonl", rows)
    pairs = load_pairs(path, PairDataConfig(max_pairs_per_label=10, seed=3))
    label_of = dict(zip(texts, labels, strict=True))
    assert len(pairs) == 4 * 10  # 8 texts per label -> 28 possible pairs, capped at 10
    triples = list(zip(pairs.queries, pairs.positives, pairs.labels, strict=True))
    assert all(label_of[q] == label_of[p] == y for q, p, y in triples)
    assert len({frozenset((q, p)) for q, p, _ in triples}) == len(pairs)  # no pair twice
    # same seed, same pairs; another seed, other pairs
    assert load_pairs(path, PairDataConfig(max_pairs_per_label=10, seed=3)) == pairs
    assert load_pairs(path, PairDataConfig(max_pairs_per_label=10, seed=4)).queries != pairs.queries
    # every text of the query's label counts as a positive for it
    query = pairs.queries[0]
    assert pairs.known_positives()[query] == {t for t in texts if label_of[t] == label_of[query]}


def test_small_labels_give_all_pairs_and_singletons_are_skipped() -> None:
    pairs = pairs_from_labelled(["a1", "a2", "a3", "b1", "b2", "c1"], ["a", "a", "a", "b", "b", "c"],
                                max_pairs_per_label=100)
    assert sorted(pairs.labels) == ["a", "a", "a", "b"]
    assert "c1" not in pairs.queries + pairs.positives


@pytest.mark.parametrize(("header", "lines", "message"), [
    ("question,answer", ["q,a", "r,b"], "expected pairs ('query', 'positive'"),
    ("query,positive", ["reset my pin,", "late parcel,Delivery"], "row 1 column 'positive' is empty"),
    ("query,positive", ["reset my pin,How to change your PIN"], "1 pair(s); training and evaluation need at least 2"),
    ("query,positive", ["q1,same answer", "q2,same answer"], "all 2 pairs have the same positive 'same answer'"),
    ("text,label", ["a,x", "b,y", "c,z"], "no label has 2 distinct texts"),
    ("text,label", ["a,x", "b,"], "row 2 has no label in column 'label'"),
])
def test_bad_pair_files_name_the_problem(tmp_path: Path, header: str, lines: list[str], message: str) -> None:
    path = write_csv(tmp_path / "bad.csv", header, *lines)
    with pytest.raises(DataError) as error:
        load_pairs(path)
    assert message in str(error.value)
    assert str(path) in str(error.value) or "columns" in str(error.value)


def test_forced_mode_reports_missing_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "pairs.csv", "query,positive", "q,a", "r,b")
    with pytest.raises(DataError, match=r"missing column\(s\) \['text', 'label'\]"):
        load_pairs(path, PairDataConfig(mode="labelled"))


def test_make_pairs_checks_lengths_and_types() -> None:
    with pytest.raises(DataError, match="different lengths"):
        make_pairs(["q1", "q2"], ["a1"])
    with pytest.raises(DataError, match=r"row 2 column 'query' is None"):
        make_pairs(["q1", None], ["a1", "a2"])
    pairs = make_pairs([" q1", "q2"], ["a1", "a2"], [["n1"], []])
    assert isinstance(pairs, TextPairs) and pairs.queries == ("q1", "q2") and pairs.negatives == (("n1",), ())
