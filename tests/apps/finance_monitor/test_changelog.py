"""The state store's changelog without a broker: the records a batch writes rebuild, in another processor's
empty store, exactly the state that wrote them; compaction keeps only live state; webhook outcomes are
logged; a restore replaces a local copy that belongs to another changelog.
(The changelog topic itself, restore on assignment and its loss: test_changelog_kafka.py.)"""

from __future__ import annotations

from apps.finance_monitor.changelog import decode, encode, restore_partition
from apps.finance_monitor.engine import AlertEngine
from apps.finance_monitor.messages import MessageLimits
from apps.finance_monitor.store import StateStore
from apps.finance_monitor.tickers import TickerExtractor

from .helpers import keyword_scorer, rules, write_batch
from .test_rules_windows import neutral_then_negative

NEWS0 = ("news", 0)


def engine() -> AlertEngine:
    return AlertEngine(rules(), TickerExtractor({"NOVA": ("Novagen",)}), MessageLimits(), "test:v1", 20)


def compacted(log: list) -> dict:
    """What Kafka's log compaction keeps of a partition's records: the last value per key, tombstones dropped."""
    latest: dict = {}
    for _, (key, value) in log:
        latest[key] = value
    return {key: value for key, value in latest.items() if value is not None}


class ListChangelog:
    """A changelog partition as a list, read back like ChangelogReader."""

    topic = "test-changelog"

    def __init__(self, changes: list) -> None:
        self.changes = changes

    def bounds(self, partition: int) -> tuple[int, int]:
        return 0, len(self.changes)

    def read(self, partition: int, start: int, end: int) -> list:
        return self.changes[start:end]


def test_a_store_restored_from_the_compacted_changelog_carries_on_with_the_same_alerts(tmp_path):
    records = neutral_then_negative()
    expected = [a.alert_id for a in engine().process(records, keyword_scorer).alerts]
    first, store, log, alerts = engine(), StateStore(tmp_path / "first.db"), [], []
    for i in range(0, 44, 4):  # the first 44 records on one processor, which then dies
        alerts += write_batch(store, first.process(records[i:i + 4], keyword_scorer), 3600.0, dedup_records=20,
                              log=log)
    assert {partition for partition, _ in log} == {NEWS0}
    live = compacted(log)
    assert live[("c",)] == {"applied": 44} and len([k for k in live if k[0] == "s"]) == 20  # the dedup horizon
    assert any(value is None for _, (_, value) in log)  # events that left the longest window are tombstoned

    other = StateStore(tmp_path / "other.db")  # another host: an empty store, the compacted changelog
    changes = [decode(*encode(change)) for change in live.items()]
    assert restore_partition(other, ListChangelog(changes), "test-changelog", *NEWS0) == len(live)
    second = engine()
    second.partitions[NEWS0] = other.load_partition(*NEWS0, second)
    restored, original = second.partitions[NEWS0], first.partitions[NEWS0]
    assert restored.applied == 44 and restored.seen == original.seen
    windows, before = restored.tickers["NOVA"], original.tickers["NOVA"]
    assert windows.stats("baseline") == before.stats("baseline") and windows.released == before.released
    assert windows.buffered == before.buffered and windows.last_alert == before.last_alert
    assert [a for _, a in other.alerts_after(0)] == [a for _, a in store.alerts_after(0)]
    alerts += write_batch(other, second.process(records[44:], keyword_scorer), 3600.0)
    assert [a.alert_id for a in alerts] == expected
    store.close()
    other.close()


def test_webhook_outcomes_reach_the_changelog_with_the_next_batch_and_are_not_undone_by_a_restore(tmp_path):
    records = neutral_then_negative()
    e, store, log = engine(), StateStore(tmp_path / "a.db"), []
    new = write_batch(store, e.process(records[:46], keyword_scorer), 3600.0, webhook=True, log=log)
    first_record = compacted(log)[("a", new[0].alert_id)]
    assert new and first_record["webhook"] == "pending"
    store.record_webhook(new[0].alert_id, "sent", 1, [])
    write_batch(store, e.process(records[46:], keyword_scorer), 3600.0, webhook=True, log=log)
    assert compacted(log)[("a", new[0].alert_id)]["webhook"] == "sent"

    # an older record read back (a restore of the tail) does not make the delivered alert pending again
    restore_partition(store, ListChangelog([(("a", new[0].alert_id), first_record)]), "test-changelog", *NEWS0)
    assert new[0].alert_id not in [a["alert_id"] for a, _ in store.pending_webhooks()]
    store.close()


def test_a_local_copy_of_another_changelog_is_discarded(tmp_path, caplog):
    """The changelog topic was deleted and recreated (a new topic id): the local rows go, the new topic rules."""
    e, store = engine(), StateStore(tmp_path / "a.db")
    write_batch(store, e.process(neutral_then_negative()[:10], keyword_scorer), 3600.0)
    assert store.changelog_position(*NEWS0) == ("test-changelog", 0)
    assert restore_partition(store, ListChangelog([]), "recreated-id", *NEWS0) == 0
    assert "discarding it" in caplog.text
    assert store.checkpoint(*NEWS0) is None and store.alerts_after(0) == []
    assert store.changelog_position(*NEWS0) == ("recreated-id", 0)
    store.close()
