"""The pure engine and the store under exactly-once: repeated message ids count once, a batch redone after an
aborted transaction produces its outputs again without counting twice, and a stale writer is refused.
No broker here; the same rules against the real broker are in test_exactly_once.py."""

from __future__ import annotations

import dataclasses
import json

import pytest

from apps.finance_monitor.engine import AlertEngine
from apps.finance_monitor.messages import MessageLimits
from apps.finance_monitor.store import StaleStateError, StateStore
from apps.finance_monitor.tickers import TickerExtractor

from .helpers import keyword_scorer, record, rules, write_batch
from .test_rules_windows import T0, neutral_then_negative


def engine(dedup_records: int = 100_000) -> AlertEngine:
    return AlertEngine(rules(), TickerExtractor({"NOVA": ("Novagen",), "ORBT": ("Orbital",)}), MessageLimits(),
                       "test:v1", dedup_records)


def renumbered(records, start: int = 0):
    return [dataclasses.replace(r, offset=start + i) for i, r in enumerate(records)]


def short_count(e: AlertEngine, ticker: str = "NOVA") -> int:
    return e.partitions[("news", 0)].tickers[ticker].stats("short").count


def test_a_repeated_id_is_scored_and_counted_once():
    records = [record(0, T0, "Novagen files its annual report", ident="a"),
               record(1, T0 + 10, "Novagen files its annual report", ident="b"),
               record(2, T0, "Novagen files its annual report", ident="a"),  # a producer retry's copy
               record(3, T0 + 20, "Novagen opens an office", ident="c"),
               record(4, T0 + 10, "Novagen files its annual report", ident="b")]
    e = engine()
    result = e.process(records, keyword_scorer)
    assert [s["id"] for _, s in result.scored] == ["a", "b", "c"] and result.duplicates == 2
    again = e.process([record(5, T0, "Novagen files its annual report", ident="a")], keyword_scorer)
    assert again.scored == [] and again.duplicates == 1  # across batches too


def test_a_message_fanned_out_to_two_tickers_counts_once_for_each():
    body = json.dumps({"id": "m", "ts": T0, "text": "Novagen and Orbital merge", "tickers": ["NOVA", "ORBT"]})
    records = [dataclasses.replace(record(i, T0, "x"), key=key, value=body.encode()) for i, key in
               enumerate([b"NOVA", b"ORBT", b"NOVA"])]
    result = engine().process(records, keyword_scorer)
    assert len(result.scored) == 2 and result.duplicates == 1
    assert sorted(ticker for _, ticker, _ in result.events) == ["NOVA", "ORBT"]


def test_the_horizon_is_counted_in_offsets():
    e = engine(dedup_records=3)
    first = e.process([record(0, T0, "Novagen files", ident="a")] +
                      [record(i, T0 + i, "Novagen files", ident=f"x{i}") for i in range(1, 4)], keyword_scorer)
    assert first.duplicates == 0
    later = e.process([record(4, T0 + 5, "Novagen files", ident="a")], keyword_scorer)  # 4 offsets later
    assert later.duplicates == 0 and len(later.scored) == 1


def test_seen_ids_survive_a_restore_from_the_store(tmp_path):
    store = StateStore(tmp_path / "a.db")
    first = engine()
    write_batch(store, first.process([record(0, T0, "Novagen files", ident="a")], keyword_scorer), 3600.0,
                dedup_records=first.dedup_records)
    second = engine()
    second.partitions[("news", 0)] = store.load_partition("news", 0, second)
    result = second.process([record(1, T0, "Novagen files", ident="a")], keyword_scorer)
    assert result.duplicates == 1 and result.scored == []
    store.close()


def test_a_redone_batch_repeats_its_outputs_and_alerts_but_not_its_counts(tmp_path):
    """Batches of 4 through SQLite; the batch at offsets 40-43 (the burst) reaches SQLite but its Kafka
    transaction aborts. The redo (from a restored engine, as after a crash) produces the same scores and,
    from the store, the same alerts; the windows hold every record once and the later alerts match a run
    without the fault."""
    records = neutral_then_negative()
    undisturbed = engine()
    reference = undisturbed.process(records, keyword_scorer)
    store, first = StateStore(tmp_path / "a.db"), engine()
    published: list[str] = []
    for i in range(0, 40, 4):
        result = first.process(records[i:i + 4], keyword_scorer)
        write_batch(store, result, 3600.0)
        published += [a.alert_id for a in result.alerts]
    lost = first.process(records[40:44], keyword_scorer)
    write_batch(store, lost, 3600.0)  # ... and then the transaction aborts: nothing of it is visible

    second = engine()  # the successor restores the partition; the committed offset is 40
    second.partitions[("news", 0)] = store.load_partition("news", 0, second)
    assert second.partitions[("news", 0)].applied == 44
    redo = second.process(records[40:46], keyword_scorer)
    assert [s for _, s in redo.scored] == [s for _, s in reference.scored[40:46]]
    assert redo.redone == {("news", 0): (40, 43)}
    stored = store.alerts_raised(redo.redone)
    assert [a["alert_id"] for a in stored] == [a.alert_id for a in lost.alerts]
    write_batch(store, redo, 3600.0)
    published += [a["alert_id"] for a in stored] + [a.alert_id for a in redo.alerts]
    rest = second.process(records[46:], keyword_scorer)
    published += [a.alert_id for a in rest.alerts]
    assert published == [a.alert_id for a in reference.alerts] and published
    assert short_count(second) == short_count(undisturbed)  # nothing counted twice
    store.close()


def test_a_writer_whose_checkpoint_was_moved_on_is_refused(tmp_path):
    store = StateStore(tmp_path / "a.db")
    mine, theirs = engine(), engine()
    write_batch(store, mine.process(renumbered(neutral_then_negative())[:4], keyword_scorer), 3600.0)
    theirs.partitions[("news", 0)] = store.load_partition("news", 0, theirs)
    write_batch(store, theirs.process(renumbered(neutral_then_negative())[4:8], keyword_scorer), 3600.0)

    stale = mine.process(renumbered(neutral_then_negative())[4:8], keyword_scorer)  # mine still thinks 4
    with pytest.raises(StaleStateError, match=r"news\[0\]: the checkpoint is 8, not 4"):
        write_batch(store, stale, 3600.0)
    assert store.checkpoint("news", 0) == 8
    store.close()
