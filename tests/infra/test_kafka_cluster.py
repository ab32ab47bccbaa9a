"""The local 3-broker KRaft cluster (``KAFKA_BROKERS=3``): settings without Kafka, then a real cluster.

The real cluster's tests: topics created without settings get 3 replicas and min.insync.replicas=2;
with one broker killed (``kill -9`` mid-transaction: a partition leader, then the transaction
coordinator) a transactional ``acks=all`` producer keeps delivering, a read_committed consumer reads
every record exactly once and nothing of an aborted transaction; the killed broker restarts and its
replicas rejoin the ISR.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from infra.kafka import __main__ as kafka_cli
from infra.kafka import broker, cluster
from tests.infra.kafka_cluster import (  # noqa: F401  (kafka_cluster: the fixture)
    kafka_cluster,
    tolerate_dead_coordinator,
    wait_for_isr,
)

TRANSACTIONS = 30
PER_TRANSACTION = 40
KILL_AT = TRANSACTIONS // 3  # the broker dies halfway through this transaction


# --- settings (no Kafka) ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["2", "0", "three", "-3", "4"])
def test_bad_broker_count_names_the_value_and_the_choices(value: str) -> None:
    with pytest.raises(kafka_cli.KafkaSettingsError) as error:
        kafka_cli.brokers_from_env({"KAFKA_BROKERS": value})
    assert f"KAFKA_BROKERS='{value}'" in str(error.value)
    assert "expected 1" in str(error.value) and "or 3" in str(error.value)


def test_cli_refuses_a_bad_broker_count(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BROKERS", "2")
    assert kafka_cli.main(["status"]) == 1
    assert "KAFKA_BROKERS='2' is not supported" in capsys.readouterr().err


def test_cluster_layout_from_the_environment(tmp_path: Path) -> None:
    env = {"KAFKA_BROKERS": "3", "KAFKA_PORT": "39500", "TEXTML_VAR_DIR": str(tmp_path)}
    config = kafka_cli.cluster_from_env(env)
    assert config.ports == (39500, 39502, 39504)
    assert config.controller_ports == (39501, 39503, 39505)
    assert config.heap == "256m"
    cluster_dir = tmp_path / "kafka" / "cluster"
    assert [node.state_dir for node in config.nodes] == [cluster_dir / f"node-{i}" for i in (1, 2, 3)]
    assert config.node(2).log_file == tmp_path / "log" / "kafka-2.log"
    servers = "127.0.0.1:39500,127.0.0.1:39502,127.0.0.1:39504"
    assert kafka_cli.bootstrap_servers(env) == servers
    # the printed string is the local cluster, not an external one; another string is external
    assert kafka_cli.external_cluster(config, {"KAFKA_BOOTSTRAP_SERVERS": servers}) is None
    assert kafka_cli.bootstrap_servers({**env, "KAFKA_BOOTSTRAP_SERVERS": "b:9092"}) == "b:9092"
    # one broker stays as it was
    assert kafka_cli.bootstrap_servers({"KAFKA_PORT": "39500"}) == "127.0.0.1:39500"
    assert isinstance(kafka_cli.local_config({}), broker.BrokerConfig)


def _properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines())


def test_node_properties_replicate_everything() -> None:
    node = cluster.ClusterConfig(ports=(1000, 1002, 1004), controller_ports=(1001, 1003, 1005)).node(2)
    props = _properties(broker.server_properties(node))
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:1001,2@127.0.0.1:1003,3@127.0.0.1:1005"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:1002,CONTROLLER://127.0.0.1:1003"
    for key in ("default.replication.factor", "offsets.topic.replication.factor",
                "transaction.state.log.replication.factor", "share.coordinator.state.topic.replication.factor"):
        assert props[key] == "3", key
    for key in ("min.insync.replicas", "transaction.state.log.min.isr", "share.coordinator.state.topic.min.isr"):
        assert props[key] == "2", key


def test_single_broker_properties_are_unreplicated() -> None:
    props = _properties(broker.server_properties(broker.BrokerConfig()))
    assert props["node.id"] == "1" and props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["offsets.topic.replication.factor"] == props["transaction.state.log.min.isr"] == "1"
    assert props["default.replication.factor"] == props["min.insync.replicas"] == "1"


def test_cluster_id_is_kept_and_recovered(tmp_path: Path) -> None:
    config = cluster.ClusterConfig(state_dir=tmp_path / "cluster")
    first = cluster.cluster_id(config)
    assert cluster.cluster_id(config) == first and len(first) == 22
    # the id file is gone but a node was formatted: its id is kept, so the other nodes join the same cluster
    (config.state_dir / cluster.CLUSTER_ID_FILE).unlink()
    config.node(2).data_dir.mkdir(parents=True)
    formatted = "AAAAAAAAAAAAAAAAAAAAAA"
    (config.node(2).data_dir / "meta.properties").write_text(f"version=1\ncluster.id={formatted}\nnode.id=2\n")
    assert cluster.cluster_id(config) == formatted
    assert [p.name for p in config.state_dir.iterdir() if p.is_file()] == [cluster.CLUSTER_ID_FILE]


def test_layouts_that_cannot_work_are_refused() -> None:
    with pytest.raises(broker.BrokerError, match=r"port\(s\) 9094 used twice"):
        cluster.validate(cluster.ClusterConfig(ports=(9092, 9094, 9096), controller_ports=(9093, 9094, 9097)))
    with pytest.raises(broker.BrokerError, match="replication_factor=3 .* do not fit 2 brokers"):
        cluster.validate(cluster.ClusterConfig(ports=(9092, 9094), controller_ports=(9093, 9095)))


# --- a real cluster ------------------------------------------------------------------------------------------------

def _admin(config: cluster.ClusterConfig):
    from kafka import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=config.bootstrap_servers)


def _min_isr(admin, topic: str) -> str:
    from kafka.admin import ConfigResource

    configs = admin.describe_configs([ConfigResource("TOPIC", topic, ["min.insync.replicas"])], config_filter="all")
    return configs["topic"][topic]["min.insync.replicas"]["value"]


@pytest.mark.kafka
@pytest.mark.slow
def test_topics_without_settings_get_three_replicas(kafka_cluster: cluster.ClusterConfig) -> None:  # noqa: F811
    from kafka.admin import NewTopic

    assert cluster.registered_brokers(kafka_cluster) == {1, 2, 3}
    topic = f"test.cluster.defaults.{uuid.uuid4().hex[:8]}"
    admin = _admin(kafka_cluster)
    try:
        admin.create_topics([NewTopic(topic)])  # partitions and replication: the cluster's defaults
        partitions = wait_for_isr(kafka_cluster, topic, 3)
        assert len(partitions) == kafka_cluster.num_partitions
        assert all(len(p["replica_nodes"]) == 3 and len(p["isr_nodes"]) == 3 for p in partitions), partitions
        assert {p["leader_id"] for p in partitions} == {1, 2, 3}, "leadership should spread over the brokers"
        assert _min_isr(admin, topic) == "2"
    finally:
        admin.close()


def _coordinator(admin, transactional_id: str) -> int:
    """The broker that is the transactional id's transaction coordinator now."""
    return admin.describe_transactions([transactional_id])[transactional_id].coordinator_id


def _leader_other_than(admin, topic: str, coordinator: int) -> int:
    """A broker leading a partition of ``topic`` that is not the transaction coordinator."""
    partitions = admin.describe_topics([topic])[0]["partitions"]
    return next(p["leader_id"] for p in sorted(partitions, key=lambda p: p["partition_index"])
                if p["leader_id"] != coordinator)


def _read_committed(config: cluster.ClusterConfig, topic: str, want: int, timeout_s: float = 120.0) -> list[bytes]:
    """Every value a read_committed consumer group reads from the start, polling 3 s past ``want`` for extras."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=config.bootstrap_servers, group_id=f"g-{uuid.uuid4().hex[:8]}",
                             isolation_level="read_committed", auto_offset_reset="earliest", enable_auto_commit=False)
    values: list[bytes] = []
    deadline, extra_until = time.monotonic() + timeout_s, None
    try:
        while time.monotonic() < (extra_until or deadline):
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(record.value for record in records)
            if extra_until is None and len(values) >= want:
                extra_until = time.monotonic() + 3.0
        consumer.commit()  # creates __consumer_offsets, checked for its replicas below
    finally:
        consumer.close(autocommit=False)
    return values


def _kill_during_transactions_then_rejoin(config: cluster.ClusterConfig, kill_coordinator: bool,
                                          patch_client: bool) -> None:
    """Transactions of ``PER_TRANSACTION`` records; halfway through transaction ``KILL_AT`` one broker gets
    ``kill -9``; then every record is read exactly once with read_committed, and the broker rejoins."""
    from kafka import KafkaProducer
    from kafka.admin import NewTopic

    topic = f"test.cluster.eos.{uuid.uuid4().hex[:8]}"
    transactional_id = f"tx-{uuid.uuid4().hex[:8]}"
    admin = _admin(config)
    admin.create_topics([NewTopic(topic)])
    wait_for_isr(config, topic, 3)
    producer = KafkaProducer(bootstrap_servers=config.bootstrap_servers, acks="all", enable_idempotence=True,
                             transactional_id=transactional_id, linger_ms=5)
    if patch_client:
        tolerate_dead_coordinator(producer)
    producer.init_transactions()

    producer.begin_transaction()  # an aborted transaction: read_committed must never show it
    for i in range(PER_TRANSACTION):
        producer.send(topic, key=f"k{i % 7}".encode(), value=f"aborted-{i}".encode())
    producer.flush()
    producer.abort_transaction()

    coordinator = _coordinator(admin, transactional_id)
    victim = coordinator if kill_coordinator else _leader_other_than(admin, topic, coordinator)
    started, killed_at = time.monotonic(), 0.0
    for t in range(TRANSACTIONS):
        producer.begin_transaction()
        for i in range(PER_TRANSACTION):
            n = t * PER_TRANSACTION + i
            producer.send(topic, key=f"k{n % 7}".encode(), value=f"m-{n}".encode())
            if t == KILL_AT and i == PER_TRANSACTION // 2:
                producer.flush()
                cluster.kill(config, victim)  # kill -9, mid-transaction
                killed_at = time.monotonic()
        producer.commit_transaction()
    producer.close()
    role = "the transaction coordinator" if kill_coordinator else f"a partition leader (coordinator: {coordinator})"
    print(f"killed broker {victim}, {role}, in transaction {KILL_AT}; all {TRANSACTIONS} transactions committed "
          f"{time.monotonic() - killed_at:.1f} s after the kill ({time.monotonic() - started:.1f} s in all)")

    total = TRANSACTIONS * PER_TRANSACTION
    counts = Counter(_read_committed(config, topic, total))
    assert not [v for v in counts if v.startswith(b"aborted-")], "read_committed showed an aborted transaction"
    assert [v for v, c in counts.items() if c > 1] == [], "duplicates after the broker was killed"
    assert set(counts) == {f"m-{n}".encode() for n in range(total)}

    # The killed broker restarts with its data and catches up: back in every in-sync replica set.
    restart = time.monotonic()
    pids = cluster.start(config)
    assert set(pids) == {1, 2, 3} and cluster.registered_brokers(config) == {1, 2, 3}
    for name in (topic, "__transaction_state", "__consumer_offsets"):
        partitions = wait_for_isr(config, name, 3)
        assert all(len(p["replica_nodes"]) == 3 for p in partitions), name
        assert all(len(p["isr_nodes"]) == 3 for p in partitions), f"{name}: broker {victim} did not rejoin the ISR"
    assert _min_isr(admin, "__transaction_state") == "2"
    print(f"broker {victim} back in every ISR {time.monotonic() - restart:.1f} s after its restart")
    admin.close()


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.timeout(420)  # commit_transaction() has no timeout of its own
def test_kill_a_partition_leader_exactly_once_then_it_rejoins(kafka_cluster: cluster.ClusterConfig) -> None:  # noqa: F811
    _kill_during_transactions_then_rejoin(kafka_cluster, kill_coordinator=False, patch_client=False)


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.timeout(420)
def test_kill_the_transaction_coordinator_exactly_once(kafka_cluster: cluster.ClusterConfig) -> None:  # noqa: F811
    """The same with the producer's transaction coordinator killed; needs ``tolerate_dead_coordinator``
    (without it kafka-python 3.0.12's ``commit_transaction()`` hangs for good)."""
    _kill_during_transactions_then_rejoin(kafka_cluster, kill_coordinator=True, patch_client=True)


@pytest.mark.kafka
@pytest.mark.slow
def test_finance_topics_and_changelog_are_replicated_on_the_cluster(
        kafka_cluster: cluster.ClusterConfig) -> None:  # noqa: F811
    from apps.finance_monitor.changelog import ensure_changelog
    from apps.finance_monitor.stream import ensure_topics

    suffix = uuid.uuid4().hex[:8]
    topics = [f"fm.news.{suffix}", f"fm.scored.{suffix}"]
    ensure_topics(kafka_cluster.bootstrap_servers, topics, partitions=4)
    admin = _admin(kafka_cluster)
    try:
        ensure_changelog(admin, f"fm-{suffix}-state-changelog", 4)
        for topic in [*topics, f"fm-{suffix}-state-changelog"]:
            partitions = wait_for_isr(kafka_cluster, topic, 3)
            assert len(partitions) == 4 and all(len(p["replica_nodes"]) == 3 for p in partitions), (topic, partitions)
            assert _min_isr(admin, topic) == "2"
    finally:
        admin.close()
