"""The project's Kafka broker, exercised for real with kafka-python.

Messages produced with ``acks=all`` into a partitioned topic are consumed by a group with
manual commits; a restarted consumer resumes at the committed offset, and a restarted
broker still holds both the messages and the group's committed offsets.
"""

from __future__ import annotations

import time
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from infra.kafka import broker

PARTITIONS = 3
MESSAGES = 30
FIRST_BATCH = 12


def _consumer(bootstrap: str, group: str, topic: str) -> KafkaConsumer:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=5,
        consumer_timeout_ms=1000,
    )
    consumer.subscribe([topic])
    return consumer


def _poll(consumer: KafkaConsumer, want: int, timeout_s: float = 30.0) -> list:
    """Poll until ``want`` records arrived or the time is up; returns them in arrival order."""
    records: list = []
    deadline = time.monotonic() + timeout_s
    while len(records) < want and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    return records


def _commit_processed(consumer: KafkaConsumer, processed: list) -> dict[TopicPartition, int]:
    """Commit exactly the records processed: per partition, the offset after the last one."""
    offsets: dict[TopicPartition, int] = {}
    for record in processed:
        tp = TopicPartition(record.topic, record.partition)
        offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
    consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()})
    return offsets


def _group_offsets(bootstrap: str, group: str, timeout_s: float = 30.0) -> dict[TopicPartition, int]:
    """The group's committed offsets, retrying while the group coordinator is still loading."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                offsets = admin.list_group_offsets(group)[group]
                return {tp: meta.offset for tp, meta in offsets.items()}
            except KafkaError as error:  # e.g. NotCoordinator right after a broker restart
                if not error.retriable or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        admin.close()


def test_topic_consumer_group_and_broker_restart(
    kafka_broker: broker.BrokerConfig | None, kafka_bootstrap: str
) -> None:
    if kafka_broker is None:
        pytest.skip("restarting the broker needs the test session's own broker")
    topic = f"test.durability.{uuid.uuid4().hex[:8]}"
    group = f"group-{uuid.uuid4().hex[:8]}"

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
    admin.close()

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    sent = []
    for i in range(MESSAGES):
        future = producer.send(topic, key=f"ticker-{i % 6}".encode(), value=f"message-{i}".encode())
        sent.append(future.get(timeout=30))
    producer.flush()
    producer.close()
    assert len({meta.partition for meta in sent}) > 1, "keys should spread over several partitions"

    # A consumer processes part of the stream, commits exactly that part, and stops.
    first = _consumer(kafka_bootstrap, group, topic)
    polled = _poll(first, FIRST_BATCH)
    processed = polled[:FIRST_BATCH]
    committed = _commit_processed(first, processed)
    first.close(autocommit=False)
    assert _group_offsets(kafka_bootstrap, group) == committed

    # A restarted consumer in the same group resumes at the committed offsets.
    second = _consumer(kafka_bootstrap, group, topic)
    rest = _poll(second, MESSAGES - FIRST_BATCH)
    second.commit()
    second.close(autocommit=False)
    seen = {(r.partition, r.offset) for r in processed}
    assert not seen & {(r.partition, r.offset) for r in rest}, "records before the committed offset came again"
    assert sorted(r.value for r in processed + rest) == sorted(f"message-{i}".encode() for i in range(MESSAGES))
    end_offsets = _group_offsets(kafka_bootstrap, group)
    assert sum(end_offsets.values()) == MESSAGES

    # The broker restarts; messages and committed offsets are still there.
    broker.stop(kafka_broker)
    assert not broker.answers_metadata(kafka_bootstrap, timeout_s=2.0)
    broker.start(kafka_broker)
    assert _group_offsets(kafka_bootstrap, group) == end_offsets

    third = _consumer(kafka_bootstrap, group, topic)
    assert _poll(third, 1, timeout_s=5.0) == [], "a group that committed everything got records again"
    third.close(autocommit=False)

    replay = _consumer(kafka_bootstrap, f"replay-{uuid.uuid4().hex[:8]}", topic)
    values = sorted(r.value for r in _poll(replay, MESSAGES))
    replay.close(autocommit=False)
    assert values == sorted(f"message-{i}".encode() for i in range(MESSAGES))
