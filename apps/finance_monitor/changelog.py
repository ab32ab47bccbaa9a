"""The state store's changelog: a compacted Kafka topic that holds every processor's state.

Kafka Streams and Quix Streams keep a stream's state in a local store per processor and log every
change of it to a compacted topic, ``<application>-<store>-changelog``, with one partition per input
partition; a processor assigned an input partition rebuilds that partition's state from the
changelog partition of the same number before it processes a record. This module is that topic
for the stream's one store, ``state``: ``<group>-state-changelog``.

Records are JSON, keyed so that compaction keeps exactly the live state (the latest value per key;
``null`` deletes)::

    ["c"]                    {"applied": next input offset applied to the state}
    ["t", ticker]            {"max_ts", "released_ts", "released_seq", "last_alert"}   watermark, cooldowns
    ["e", ticker, seq]       {"ts", "id", "score", "negative", "text"}   a window event; null once it left
                                                                         the longest window
    ["s", dedup key]         input offset of the id's first sighting;   null beyond the dedup horizon
    ["a", alert id]          {"alert", "origin", "webhook"}              the alert history / webhook outbox

The stream writes a batch's changelog records in the same Kafka transaction as its scores, alerts
and input offsets (``stream.py``), so the changelog's ``["c"]`` always equals the group's committed
offset, and a ``read_committed`` restore sees exactly the committed state.
"""

from __future__ import annotations

import json
import logging
import time

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

log = logging.getLogger(__name__)

# A compacted topic: the latest record per key is kept forever, tombstones for a day (Kafka's default), which
# bounds how long a processor may keep a stale local copy (see StateStore.changelog_position).
TOPIC_CONFIG = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": "3600000"}
Key = tuple
Change = tuple[Key, object]  # (key, JSON value or None)


class ChangelogError(KafkaError):
    """The changelog topic cannot serve the input topic (too few partitions) or cannot be read back."""


def encode(change: Change) -> tuple[bytes, bytes | None]:
    key, value = change
    return (json.dumps(list(key), separators=(",", ":")).encode(),
            None if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def decode(key: bytes, value: bytes | None) -> Change:
    return tuple(json.loads(key)), None if value is None else json.loads(value)


def ensure_changelog(admin: KafkaAdminClient, topic: str, partitions: int, replication: int = -1) -> tuple[str, bool]:
    """Create the compacted changelog when it is missing; returns (its topic id, whether it was created now).

    ``replication`` -1 is the broker's default (1 on one broker, 3 with ``min.insync.replicas=2`` on the
    local cluster): state that one broker's loss would take with it is no state store.

    The topic id tells a changelog apart from an earlier one of the same name (deleted and recreated),
    whose offsets a local store's position must not be compared with.
    """
    created = False
    described = admin.describe_topics([topic])[0]
    if described["error_code"] != 0:  # UNKNOWN_TOPIC_OR_PARTITION: never created, or deleted
        try:
            admin.create_topics([NewTopic(topic, partitions, replication, topic_configs=TOPIC_CONFIG)])
            created = True
        except TopicAlreadyExistsError:  # another processor of the group was faster
            pass
        deadline = time.monotonic() + 30
        while (described := admin.describe_topics([topic])[0])["error_code"] != 0:
            if time.monotonic() > deadline:
                raise ChangelogError(f"the changelog topic {topic} was created but is not described after 30 s")
            time.sleep(0.2)
    if len(described["partitions"]) < partitions:
        raise ChangelogError(f"the changelog topic {topic} has {len(described['partitions'])} partitions but the "
                             f"input has {partitions}; a changelog needs one partition per input partition: add "
                             f"partitions to it (kafka-topics --alter --partitions {partitions})")
    return str(described["topic_id"]), created


def forbid_auto_creation(cluster) -> None:
    """Make a kafka-python client's metadata requests stop auto-creating topics.

    kafka-python 3.0.12 accepts ``allow_auto_create_topics=False`` but does not hand it to its cluster
    metadata, whose requests then let the broker (``auto.create.topics.enable``, the default) create a
    deleted changelog again as an ordinary topic: not compacted, the broker's default partition count.
    ``cluster`` is the client's ClusterMetadata (a producer's ``_metadata``, a consumer's ``_cluster``).
    """
    cluster.config["allow_auto_create_topics"] = False


class ChangelogReader:
    """Reads changelog partitions back (``read_committed``: records of aborted transactions never count)."""

    def __init__(self, bootstrap: str, topic: str, timeout_s: float = 120.0) -> None:
        self.topic = topic
        self.timeout_s = timeout_s
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                      isolation_level="read_committed", allow_auto_create_topics=False,
                                      client_id="finance-monitor-restore", max_poll_records=5000)
        forbid_auto_creation(self.consumer._cluster)

    def close(self) -> None:
        self.consumer.close()

    def bounds(self, partition: int) -> tuple[int, int]:
        """The partition's first offset and its last stable offset (the end of its committed records)."""
        tp = TopicPartition(self.topic, partition)
        return self.consumer.beginning_offsets([tp])[tp], self.consumer.end_offsets([tp])[tp]

    def read(self, partition: int, start: int, end: int) -> list[Change]:
        """The changes of one partition from offset ``start`` up to ``end``, in order."""
        if start >= end:
            return []
        tp = TopicPartition(self.topic, partition)
        self.consumer.assign([tp])
        self.consumer.seek(tp, start)
        changes: list[Change] = []
        deadline = time.monotonic() + self.timeout_s
        while self.consumer.position(tp) < end:
            if time.monotonic() > deadline:
                raise ChangelogError(f"{self.topic}[{partition}]: read to offset {self.consumer.position(tp)} of "
                                     f"{end} in {self.timeout_s:.0f} s")
            for records in self.consumer.poll(timeout_ms=500).values():
                changes += [decode(r.key, r.value) for r in records if r.offset < end]
        self.consumer.assign([])
        return changes

    def first_timestamp(self, topic: str, partition: int, offset: int) -> float | None:
        """The timestamp (epoch s) of the record at ``offset`` of any topic, None when there is none."""
        tp = TopicPartition(topic, partition)
        self.consumer.assign([tp])
        self.consumer.seek(tp, offset)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                for records in self.consumer.poll(timeout_ms=500, max_records=1).values():
                    return records[0].timestamp / 1000.0
            return None
        finally:
            self.consumer.assign([])


def restore_partition(store, reader: ChangelogReader, changelog_id: str, topic: str, part: int) -> int:
    """Bring the local store's rows of input partition ``part`` up to its changelog partition; returns the
    number of changelog records applied.

    A store that has this partition at a changelog position reads only the records after it (a restart
    on the same host reads little); a store whose position belongs to another changelog (the topic was
    deleted and recreated: another topic id) or lies beyond the changelog's end is wiped and restored
    from the changelog's first offset.
    """
    low, high = reader.bounds(part)
    position = store.changelog_position(topic, part)
    if position is not None and (position[0] != changelog_id or not low <= position[1] <= high):
        log.warning("%s[%d]: the local state was written to a changelog that no longer exists (%s at offset %d; "
                    "now %s with offsets %d to %d): discarding it", topic, part, position[0], position[1],
                    changelog_id, low, high)
        store.wipe(topic, part)
        position = None
    start = low if position is None else position[1]
    changes = reader.read(part, start, high)
    store.apply_changelog(topic, part, changelog_id, changes, high)
    return len(changes)
