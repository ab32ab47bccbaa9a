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


def test_added_at_is_stored_and_an_older_catalog_gains_the_column(tmp_path) -> None:
    import sqlite3

    from apps.recommender.catalog import Catalog

    old = tmp_path / "old.sqlite3"
    with sqlite3.connect(old) as db:  # the items table as it was before added_at
        db.execute("CREATE TABLE items (key INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, "
                   "title TEXT NOT NULL, text TEXT NOT NULL, tags TEXT NOT NULL, category TEXT, price REAL, "
                   "available INTEGER NOT NULL, attributes TEXT NOT NULL, seq INTEGER NOT NULL, "
                   "deleted INTEGER NOT NULL DEFAULT 0)")
    catalog = Catalog(old).open()
    catalog.upsert(parse_items([{"id": "a", "title": "A", "added_at": "1700000000"}, {"id": "b", "title": "B"}]))
    stored = {s.item.id: s.item.added_at for s in catalog.live_items()}
    catalog.close()
    assert stored == {"a": 1700000000.0, "b": None}
    with pytest.raises(ItemValidationError, match="added_at"):
        parse_items([{"id": "c", "title": "C", "added_at": -5}])
