from pathlib import Path

import pytest

from apps.recommender.items import Item, ItemValidationError, item_text, parse_items, read_items
from core.data.tables import DataError


def test_csv_cells_are_parsed() -> None:
    [item] = parse_items([{"id": "a", "title": " Tent ", "tags": "camping|tent", "available": "no",
                           "price": "12.5", "category": "", "attributes": '{"color": "red"}'}])
    assert item == Item(id="a", title="Tent", tags=("camping", "tent"), available=False, price=12.5,
                        attributes={"color": "red"})
    assert "Tags: camping, tent." in item_text(item)


def test_integer_ids_become_text() -> None:
    assert parse_items([{"id": 42, "title": "x"}])[0].id == "42"


def test_every_bad_field_is_named_with_its_row() -> None:
    rows = [{"id": "ok", "title": "fine"},
            {"id": "b", "price": -1},
            {"id": "c", "title": "x", "available": "maybe", "colour": "red"},
            {"id": "ok", "title": "again"}]
    with pytest.raises(ItemValidationError) as caught:
        parse_items(rows, source="upload.csv")
    problems = {(row, field) for row, field, _ in caught.value.problems}
    assert problems == {(2, "title"), (2, "price"), (3, "available"), (3, "colour"), (4, "id")}
    message = str(caught.value)
    assert "upload.csv" in message and "nothing was written" in message
    assert "row 2 field 'title': is required" in message
    assert "'maybe' is not a yes/no value" in message
    assert "repeats row 1" in message


def test_read_items_from_files(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text("id,title,price\na,Tent,10\nb,,5\n", encoding="utf-8")
    with pytest.raises(ItemValidationError, match="row 2 field 'title'"):
        read_items(path)
    with pytest.raises(DataError, match="does not exist"):
        read_items(tmp_path / "missing.jsonl")
