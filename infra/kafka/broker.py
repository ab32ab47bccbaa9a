"""One Apache Kafka node (KRaft, combined broker + controller) run with Java 17.

The broker's jars come from Maven Central through ``infra/kafka/pom.xml``; this module
writes ``server.properties``, formats the storage once, starts the JVM and knows when the
broker is ready (it answers a metadata request), so that tests and ``make kafka-up`` can
rely on it. By default the node is a cluster of its own (replication factor 1 everywhere);
``infra/kafka/cluster.py`` runs several nodes as one replicated cluster.
"""

from __future__ import annotations

import base64
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from infra.procs import alive, tail

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
POM = REPO_ROOT / "infra" / "kafka" / "pom.xml"
LOG4J_CONFIG = REPO_ROOT / "infra" / "kafka" / "log4j2.xml"


class BrokerError(RuntimeError):
    """The broker could not be assembled, formatted, started or reached."""


@dataclass(frozen=True)
class BrokerConfig:
    """Where the broker listens and keeps its files. All paths are absolute.

    ``node_id``, ``quorum_voters`` (``id@host:port,...``; empty: this node alone) and the
    replication settings only change for a node of a multi-node cluster (``cluster.py``).
    """

    port: int = 9092
    controller_port: int = 9093
    host: str = "127.0.0.1"
    state_dir: Path = REPO_ROOT / "var" / "kafka" / "node"
    lib_dir: Path = REPO_ROOT / "var" / "kafka" / "lib"
    log_file: Path = REPO_ROOT / "var" / "log" / "kafka.log"
    pid_file: Path = REPO_ROOT / "var" / "run" / "kafka.pid"
    java: str = "java"
    heap: str = "768m"
    num_partitions: int = 3
    node_id: int = 1
    quorum_voters: str = ""
    replication_factor: int = 1
    min_insync_replicas: int = 1

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def properties_file(self) -> Path:
        return self.state_dir / "server.properties"


def server_properties(config: BrokerConfig) -> str:
    """The broker's ``server.properties``; by default one node with replication factor 1 everywhere.

    The replication factor and ``min.insync.replicas`` apply to topics created without explicit
    settings and to the internal topics (consumer offsets, transaction state, share groups).
    """
    replicas, min_isr = str(config.replication_factor), str(config.min_insync_replicas)
    lines = {
        "process.roles": "broker,controller",
        "node.id": str(config.node_id),
        "controller.quorum.voters": config.quorum_voters or f"{config.node_id}@{config.host}:{config.controller_port}",
        "listeners": f"PLAINTEXT://{config.host}:{config.port},CONTROLLER://{config.host}:{config.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{config.host}:{config.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(config.data_dir),
        "num.partitions": str(config.num_partitions),
        "default.replication.factor": replicas,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": replicas,
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": min_isr,
        # A single developer broker: a consumer group should not wait 3 s for peers.
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
    }
    return "".join(f"{key}={value}\n" for key, value in lines.items())


def fetch_jars(config: BrokerConfig) -> None:
    """Copy the broker's runtime class path from Maven Central into ``config.lib_dir``."""
    stamp = config.lib_dir / ".complete"
    if stamp.exists() and stamp.stat().st_mtime >= POM.stat().st_mtime:
        return
    log.info("fetching Kafka jars with Maven into %s", config.lib_dir)
    command = [
        "mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
        f"-Dlib.dir={config.lib_dir}",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise BrokerError(
            f"Maven could not assemble the Kafka broker (exit {result.returncode}):\n"
            f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    stamp.touch()


def _java_command(config: BrokerConfig, main_class: str, *args: str) -> list[str]:
    if not (config.lib_dir / ".complete").exists():
        raise BrokerError(
            f"Kafka jars are missing in {config.lib_dir}; run `make setup` "
            "(or `python -m infra.kafka fetch`) first."
        )
    return [
        config.java,
        f"-Xmx{config.heap}",
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        "-cp", f"{config.lib_dir}/*",
        main_class,
        *args,
    ]


def prepare_storage(config: BrokerConfig, cluster_id: str | None = None) -> None:
    """Write ``server.properties`` and format the storage the first time only.

    The nodes of one cluster are formatted with the same ``cluster_id``; a lone node gets a random one.
    """
    config.state_dir.mkdir(parents=True, exist_ok=True)
    config.properties_file.write_text(server_properties(config))
    if (config.data_dir / "meta.properties").exists():
        return
    command = _java_command(
        config, "kafka.tools.StorageTool", "format",
        f"--cluster-id={cluster_id or new_cluster_id()}", f"--config={config.properties_file}",
    )
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise BrokerError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")


def new_cluster_id() -> str:
    """A random Kafka cluster id: 22 url-safe base64 characters, never starting with '-'."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def run_foreground(config: BrokerConfig, cluster_id: str | None = None) -> None:
    """Replace this process with the broker (for a process supervisor such as supervisord)."""
    prepare_storage(config, cluster_id)
    command = _java_command(config, "kafka.Kafka", str(config.properties_file))
    config.pid_file.parent.mkdir(parents=True, exist_ok=True)
    config.pid_file.write_text(str(os.getpid()))
    sys.stdout.flush()
    os.execvp(command[0], command)


def running_pid(config: BrokerConfig) -> int | None:
    """The pid of this project's broker process for ``config``, if it is alive."""
    try:
        pid = int(config.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return None
    # A stale pid file may name an unrelated process that reused the pid.
    return pid if b"kafka.Kafka" in cmdline and str(config.properties_file).encode() in cmdline else None


def answers_metadata(bootstrap_servers: str, timeout_s: float = 5.0) -> bool:
    """True when a broker at ``bootstrap_servers`` answers a metadata request."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    if not any(_port_open(server, timeout_s) for server in bootstrap_servers.split(",")):
        return False  # skip kafka-python's reconnect loop (and its log noise) on a closed port
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_servers,
            request_timeout_ms=int(timeout_s * 1000),
            bootstrap_timeout_ms=int(timeout_s * 1000),
        )
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.describe_cluster()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def start(config: BrokerConfig, timeout_s: float = 90.0) -> int:
    """Start the broker in the background unless it already runs; return its pid when ready."""
    pid = running_pid(config)
    if pid is None:
        if answers_metadata(config.bootstrap_servers, timeout_s=2.0):
            raise BrokerError(
                f"something else already listens on {config.bootstrap_servers}; stop it or "
                "choose another port with KAFKA_PORT"
            )
        prepare_storage(config)
        pid = spawn(config)
        try:
            wait_ready(config, pid, timeout_s)
        except BrokerError:
            stop(config, timeout_s=10.0)  # never leave a half-started broker behind
            raise
    else:
        wait_ready(config, pid, timeout_s)
    return pid


def spawn(config: BrokerConfig) -> int:
    """Start the broker's JVM in the background (storage already prepared); its pid, written to ``pid_file``."""
    config.log_file.parent.mkdir(parents=True, exist_ok=True)
    config.pid_file.parent.mkdir(parents=True, exist_ok=True)
    with open(config.log_file, "ab") as log_stream:
        process = subprocess.Popen(
            _java_command(config, "kafka.Kafka", str(config.properties_file)),
            stdout=log_stream,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    config.pid_file.write_text(str(process.pid))
    return process.pid


def wait_ready(config: BrokerConfig, pid: int | None, timeout_s: float) -> None:
    """Block until the broker answers metadata requests; fail fast if its process dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if answers_metadata(config.bootstrap_servers, timeout_s=2.0):
            return
        if pid is not None and not alive(pid):
            raise BrokerError(f"the Kafka broker exited during start-up; last log lines:\n{tail(config.log_file)}")
        time.sleep(0.5)
    raise BrokerError(
        f"the Kafka broker did not answer on {config.bootstrap_servers} within {timeout_s:.0f} s; "
        f"last log lines:\n{tail(config.log_file)}"
    )


def stop(config: BrokerConfig, timeout_s: float = 60.0) -> bool:
    """Stop the broker with SIGTERM (a controlled shutdown); SIGKILL if it hangs. False if none ran."""
    pid = running_pid(config)
    if pid is None:
        config.pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(pid):
        log.warning("Kafka broker %d ignored SIGTERM for %.0f s; killing it", pid, timeout_s)
        os.kill(pid, signal.SIGKILL)
        while alive(pid):
            time.sleep(0.1)
    config.pid_file.unlink(missing_ok=True)
    return True


def _port_open(server: str, timeout_s: float) -> bool:
    host, _, port = server.strip().rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False
