"""A local multi-broker Kafka cluster (KRaft) from the same jars as the single broker.

Each node is a combined broker + controller (``broker.py``) with its own data folder, log, pid
file and pair of ports (client, controller), all on one host; the nodes' controllers form the
KRaft quorum. Topics created without explicit settings, the consumer-offsets topic and the
transaction-state topic get ``replication_factor`` replicas and ``min.insync.replicas`` =
``min_insync_replicas``, so a producer with ``acks=all`` keeps writing while one broker is down.

The cluster is ready when every node answers a metadata request and every node is registered
as a broker; ``start`` on a running cluster starts only the nodes that are down (a killed
broker rejoins with its data) and waits for the same.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from infra.kafka import broker
from infra.procs import alive, tail

log = logging.getLogger(__name__)

CLUSTER_ID_FILE = "cluster.id"


@dataclass(frozen=True)
class ClusterConfig:
    """Where the nodes listen and keep their files. Node ``i`` (1-based) uses ``ports[i-1]`` for clients and
    ``controller_ports[i-1]`` for the KRaft quorum; its files are under ``state_dir/node-i``, ``log_dir/kafka-i.log``
    and ``run_dir/kafka-i.pid``."""

    ports: tuple[int, ...] = (9092, 9094, 9096)
    controller_ports: tuple[int, ...] = (9093, 9095, 9097)
    host: str = "127.0.0.1"
    state_dir: Path = broker.REPO_ROOT / "var" / "kafka" / "cluster"
    log_dir: Path = broker.REPO_ROOT / "var" / "log"
    run_dir: Path = broker.REPO_ROOT / "var" / "run"
    lib_dir: Path = broker.REPO_ROOT / "var" / "kafka" / "lib"
    java: str = "java"
    heap: str = "256m"  # per broker: three JVMs share a developer machine
    num_partitions: int = 3
    replication_factor: int = 3
    min_insync_replicas: int = 2
    nodes: tuple[broker.BrokerConfig, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(_node(self, i) for i in range(1, len(self.ports) + 1)))

    @property
    def bootstrap_servers(self) -> str:
        """Every broker's address, comma-separated: what clients (``KAFKA_BOOTSTRAP_SERVERS``) should get."""
        return ",".join(node.bootstrap_servers for node in self.nodes)

    @property
    def port(self) -> int:
        """The first broker's client port (``KAFKA_PORT``)."""
        return self.ports[0]

    def node(self, node_id: int) -> broker.BrokerConfig:
        return self.nodes[node_id - 1]


def _node(config: ClusterConfig, node_id: int) -> broker.BrokerConfig:
    voters = ",".join(f"{i}@{config.host}:{port}" for i, port in enumerate(config.controller_ports, start=1))
    return broker.BrokerConfig(
        port=config.ports[node_id - 1],
        controller_port=config.controller_ports[node_id - 1],
        host=config.host,
        state_dir=config.state_dir / f"node-{node_id}",
        lib_dir=config.lib_dir,
        log_file=config.log_dir / f"kafka-{node_id}.log",
        pid_file=config.run_dir / f"kafka-{node_id}.pid",
        java=config.java,
        heap=config.heap,
        num_partitions=config.num_partitions,
        node_id=node_id,
        quorum_voters=voters,
        replication_factor=config.replication_factor,
        min_insync_replicas=config.min_insync_replicas,
    )


def validate(config: ClusterConfig) -> None:
    """Raise ``BrokerError`` when the layout cannot form a cluster (ports, replication)."""
    brokers = len(config.ports)
    if len(config.controller_ports) != brokers:
        raise broker.BrokerError(f"{brokers} client ports but {len(config.controller_ports)} controller ports; "
                                 "give one of each per broker")
    ports = [*config.ports, *config.controller_ports]
    clashes = sorted({p for p in ports if ports.count(p) > 1})
    if clashes:
        raise broker.BrokerError(f"port(s) {', '.join(map(str, clashes))} used twice in the cluster's layout "
                                 f"(clients {config.ports}, controllers {config.controller_ports}); "
                                 "choose ports that do not overlap")
    if not 1 <= config.min_insync_replicas <= config.replication_factor <= brokers:
        raise broker.BrokerError(
            f"replication_factor={config.replication_factor} and min_insync_replicas={config.min_insync_replicas} "
            f"do not fit {brokers} brokers; expected 1 <= min_insync_replicas <= replication_factor <= {brokers}")


def cluster_id(config: ClusterConfig) -> str:
    """The cluster's id: kept in ``state_dir/cluster.id``; else read from a formatted node; else new.

    Every node is formatted with it, so a node whose data folder was removed rejoins the same cluster.
    """
    path = config.state_dir / CLUSTER_ID_FILE
    if path.exists():
        return path.read_text().strip()
    found = next((_formatted_id(node) for node in config.nodes if _formatted_id(node)), None) or broker.new_cluster_id()
    config.state_dir.mkdir(parents=True, exist_ok=True)
    # Nodes started at once (`run --node N` under a supervisor) race here: the first link wins, all read it.
    candidate = path.with_name(f"{CLUSTER_ID_FILE}.{os.getpid()}")
    candidate.write_text(found + "\n")
    try:
        os.link(candidate, path)
    except FileExistsError:
        pass
    finally:
        candidate.unlink()
    return path.read_text().strip()


def _formatted_id(node: broker.BrokerConfig) -> str | None:
    try:
        lines = (node.data_dir / "meta.properties").read_text().splitlines()
    except FileNotFoundError:
        return None
    return next((line.partition("=")[2].strip() for line in lines if line.startswith("cluster.id=")), None)


def start(config: ClusterConfig, timeout_s: float = 120.0) -> dict[int, int]:
    """Start the nodes that are not running and wait until the whole cluster is ready; ``{node_id: pid}``.

    Nodes started here are stopped again when the cluster does not become ready in time.
    """
    validate(config)
    pids: dict[int, int] = {}
    started: list[int] = []
    for node in config.nodes:
        pid = broker.running_pid(node)
        if pid is None and broker.answers_metadata(node.bootstrap_servers, timeout_s=2.0):
            raise broker.BrokerError(f"something else already listens on {node.bootstrap_servers}; stop it or "
                                     "choose other ports with KAFKA_PORT")
        pids[node.node_id] = pid or 0
    shared_id = cluster_id(config)
    for node in config.nodes:
        if not pids[node.node_id]:
            broker.prepare_storage(node, cluster_id=shared_id)
            pids[node.node_id] = broker.spawn(node)
            started.append(node.node_id)
    try:
        wait_ready(config, pids, timeout_s)
    except BaseException:  # a timeout, a dead node, Ctrl-C: never leave a half-started cluster behind
        stop(config, node_ids=started, timeout_s=10.0)
        raise
    return pids


def wait_ready(config: ClusterConfig, pids: dict[int, int], timeout_s: float) -> None:
    """Until every node answers and all are registered brokers; fail fast when a node's process dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for node in config.nodes:
            if not alive(pids[node.node_id]):
                raise broker.BrokerError(f"Kafka node {node.node_id} exited during start-up; last lines of "
                                         f"{node.log_file}:\n{tail(node.log_file)}")
        if registered_brokers(config) == {node.node_id for node in config.nodes} and all(
                broker.answers_metadata(node.bootstrap_servers, timeout_s=2.0) for node in config.nodes):
            return
        time.sleep(0.5)
    raise broker.BrokerError(f"the Kafka cluster on {config.bootstrap_servers} was not ready within {timeout_s:.0f} s "
                             f"(registered brokers: {sorted(registered_brokers(config)) or 'none'}); logs: "
                             f"{', '.join(str(node.log_file) for node in config.nodes)}")


def registered_brokers(config: ClusterConfig, timeout_s: float = 5.0) -> set[int]:
    """The node ids the cluster's metadata lists as live (unfenced) brokers; empty when no node answers."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    live = [node.bootstrap_servers for node in config.nodes
            if broker.answers_metadata(node.bootstrap_servers, timeout_s=timeout_s)]
    if not live:
        return set()
    try:
        admin = KafkaAdminClient(bootstrap_servers=",".join(live), request_timeout_ms=int(timeout_s * 1000),
                                 bootstrap_timeout_ms=int(timeout_s * 1000))
    except (KafkaError, OSError, ValueError):
        return set()
    try:
        return {b["broker_id"] for b in admin.describe_cluster()["brokers"] if not b.get("is_fenced")}
    except (KafkaError, OSError):
        return set()
    finally:
        admin.close()


def stop(config: ClusterConfig, node_ids: list[int] | None = None, timeout_s: float = 60.0) -> list[int]:
    """Stop the running nodes (all, or ``node_ids``) together with SIGTERM; SIGKILL those that hang.

    Returns the ids of the nodes that were running. The nodes are signalled at once: stopped one
    by one, the last ones would wait for a controller quorum that is already gone.
    """
    wanted = [config.node(i) for i in node_ids] if node_ids is not None else list(config.nodes)
    running = {node.node_id: pid for node in wanted if (pid := broker.running_pid(node))}
    for pid in running.values():
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while any(alive(pid) for pid in running.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    for node_id, pid in running.items():
        if alive(pid):
            log.warning("Kafka node %d (pid %d) ignored SIGTERM for %.0f s; killing it", node_id, pid, timeout_s)
            os.kill(pid, signal.SIGKILL)
            while alive(pid):
                time.sleep(0.1)
    for node in wanted:
        node.pid_file.unlink(missing_ok=True)
    return sorted(running)


def kill(config: ClusterConfig, node_id: int) -> int:
    """``kill -9`` one node (for fault tests); its pid. Raises ``BrokerError`` when it is not running."""
    node = config.node(node_id)
    pid = broker.running_pid(node)
    if pid is None:
        raise broker.BrokerError(f"Kafka node {node_id} is not running (pid file {node.pid_file})")
    os.kill(pid, signal.SIGKILL)
    while alive(pid):
        time.sleep(0.05)
    return pid

