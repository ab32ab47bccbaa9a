"""A real 3-broker KRaft cluster for tests: free ports on 127.0.0.1, data and logs in a temporary folder.

Use the fixture from any test module by importing it (pytest finds fixtures imported into a module)::

    from tests.infra.kafka_cluster import kafka_cluster  # noqa: F401  (the fixture)

    def test_something(kafka_cluster):
        servers = kafka_cluster.bootstrap_servers  # "127.0.0.1:39092,127.0.0.1:39094,127.0.0.1:39096"

The fixture is module-scoped: tests of one module share the cluster, so a test that kills a broker
restarts it (``cluster.start``) before it ends. ``running_cluster`` is the same as a context manager.
``TEST_KAFKA_CLUSTER_PORT`` sets the first port tried (default 39092); each broker uses two ports.

``tolerate_dead_coordinator(producer)`` works around a kafka-python 3.0.12 bug that makes a transactional
producer hang when its transaction coordinator's broker dies; tests that kill brokers under a
transactional producer need it (and so does any long-running transactional producer).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from infra.kafka import broker, cluster

BROKERS = 3
HEAP = "256m"  # per broker: three JVMs on a shared 2-core machine


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the JVM binds
        try:
            probe.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port_block(size: int, first: int | None = None, step: int = 10, tries: int = 200) -> int:
    """The first port ``p`` (from ``first``, in steps of ``step``) with ``p .. p+size-1`` all free on 127.0.0.1."""
    start = first if first is not None else int(os.environ.get("TEST_KAFKA_CLUSTER_PORT", "39092"))
    for base in range(start, start + step * tries, step):
        if all(_bindable(port) for port in range(base, base + size)):
            return base
    raise RuntimeError(f"no {size} free consecutive ports from {start} in steps of {step}; "
                       "set TEST_KAFKA_CLUSTER_PORT to another range")


def cluster_config(root: Path, base_port: int, brokers: int = BROKERS) -> cluster.ClusterConfig:
    """Broker ``i`` on ``base_port + 2(i-1)``, its controller one above; everything under ``root``."""
    return cluster.ClusterConfig(
        ports=tuple(base_port + 2 * i for i in range(brokers)),
        controller_ports=tuple(base_port + 2 * i + 1 for i in range(brokers)),
        state_dir=root / "cluster",
        log_dir=root / "log",
        run_dir=root / "run",
        heap=HEAP,
    )


@contextmanager
def running_cluster(root: Path, timeout_s: float = 180.0) -> Iterator[cluster.ClusterConfig]:
    """Start a 3-broker cluster under ``root`` on free ports; stop every broker on exit."""
    config = cluster_config(root, free_port_block(2 * BROKERS))
    broker.fetch_jars(config.node(1))
    try:
        cluster.start(config, timeout_s=timeout_s)
        yield config
    finally:
        cluster.stop(config, timeout_s=30.0)


@pytest.fixture(scope="module")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[cluster.ClusterConfig]:
    """A running 3-broker cluster (replication 3, min.insync.replicas=2) for the tests of one module."""
    with running_cluster(tmp_path_factory.mktemp("kafka-cluster")) as config:
        yield config


def wait_for_isr(config: cluster.ClusterConfig, topic: str, size: int, timeout_s: float = 120.0) -> list[dict]:
    """Poll the topic's partitions until there are some and every in-sync replica set has ``size`` members
    (a new topic's metadata reaches the brokers a moment after it is created); the partitions, as they are
    then or at the timeout."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=config.bootstrap_servers)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            partitions = admin.describe_topics([topic])[0]["partitions"]
            done = partitions and all(len(p["isr_nodes"]) == size for p in partitions)
            if done or time.monotonic() > deadline:
                return partitions
            time.sleep(0.5)
    finally:
        admin.close()


def tolerate_dead_coordinator(producer) -> None:
    """Work around kafka-python 3.0.12 losing a transactional request when its coordinator is gone.

    ``Sender._maybe_send_transactional_request`` expects ``await_ready`` to return False for a node that
    is down, but it raises ``KafkaConnectionError``; the except branch then looks the coordinator up again
    but never re-queues the request (``target_node`` is still set), so ``commit_transaction()`` waits
    forever. Returning False sends the request down the branch that re-queues it.
    """
    from kafka.errors import KafkaConnectionError

    client = producer._sender._client
    await_ready = client.await_ready

    def await_ready_or_false(node_id, timeout_ms=30000):
        try:
            return await_ready(node_id, timeout_ms=timeout_ms)
        except KafkaConnectionError:
            return False

    client.await_ready = await_ready_or_false
