"""``python -m infra.kafka fetch|up|down|status|run|bootstrap``: the project's local Kafka broker or cluster.

Environment (read here only):
  KAFKA_BROKERS            1 (default): one broker, replication 1; 3: a local KRaft cluster of three
                           brokers (replication 3, min.insync.replicas=2, internal topics too)
  KAFKA_PORT               client port of the local broker (default 9092); broker i of a cluster
                           listens on KAFKA_PORT + 2*(i-1): 9092, 9094, 9096
  KAFKA_CONTROLLER_PORT    KRaft controller port (default KAFKA_PORT + 1); broker i of a cluster
                           uses KAFKA_CONTROLLER_PORT + 2*(i-1): 9093, 9095, 9097
  KAFKA_STATE_DIR          where server.properties and the data live (default var/kafka/node;
                           var/kafka/cluster with node-1, node-2, node-3 for a cluster)
  KAFKA_HEAP               JVM heap per broker (default 768m; 256m for each broker of a cluster)
  TEXTML_VAR_DIR           runtime state of the project: logs, pid files, broker data (default var/)
  KAFKA_BOOTSTRAP_SERVERS  an existing cluster: when set to anything but the local broker's
                           address, `up` starts nothing and only checks that it answers.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

from infra.kafka import broker, cluster

BROKER_COUNTS = (1, 3)


class KafkaSettingsError(ValueError):
    """A Kafka environment variable has a value the launcher cannot use."""


def var_dir(env: dict[str, str] = os.environ) -> Path:
    """The folder for runtime state (logs, pid files, data); ``TEXTML_VAR_DIR`` overrides it."""
    return Path(env.get("TEXTML_VAR_DIR", broker.REPO_ROOT / "var")).resolve()


def config_from_env(env: dict[str, str] = os.environ) -> broker.BrokerConfig:
    var = var_dir(env)
    config = broker.BrokerConfig(
        state_dir=var / "kafka" / "node",
        log_file=var / "log" / "kafka.log",
        pid_file=var / "run" / "kafka.pid",
    )
    port = int(env.get("KAFKA_PORT", config.port))
    config = replace(
        config,
        port=port,
        controller_port=int(env.get("KAFKA_CONTROLLER_PORT", port + 1)),
        heap=env.get("KAFKA_HEAP", config.heap),
    )
    if "KAFKA_STATE_DIR" in env:
        config = replace(config, state_dir=Path(env["KAFKA_STATE_DIR"]).resolve())
    return config


def brokers_from_env(env: dict[str, str] = os.environ) -> int:
    """``KAFKA_BROKERS``: how many local brokers ``up`` runs (1 or 3)."""
    raw = env.get("KAFKA_BROKERS", "1").strip() or "1"
    try:
        count = int(raw)
    except ValueError:
        count = None
    if count not in BROKER_COUNTS:
        raise KafkaSettingsError(
            f"KAFKA_BROKERS={raw!r} is not supported; expected 1 (one broker, replication 1) or 3 "
            "(a local KRaft cluster: replication 3, min.insync.replicas=2), e.g. `make kafka-up KAFKA_BROKERS=3`")
    return count


def cluster_from_env(env: dict[str, str] = os.environ) -> cluster.ClusterConfig:
    """The local cluster of ``KAFKA_BROKERS`` brokers laid out from ``KAFKA_PORT`` (see the module's doc)."""
    count, single, var = brokers_from_env(env), config_from_env(env), var_dir(env)
    state = Path(env["KAFKA_STATE_DIR"]).resolve() if "KAFKA_STATE_DIR" in env else var / "kafka" / "cluster"
    return cluster.ClusterConfig(
        ports=tuple(single.port + 2 * i for i in range(count)),
        controller_ports=tuple(single.controller_port + 2 * i for i in range(count)),
        state_dir=state,
        log_dir=var / "log",
        run_dir=var / "run",
        heap=env.get("KAFKA_HEAP", cluster.ClusterConfig.heap),
    )


def local_config(env: dict[str, str] = os.environ) -> broker.BrokerConfig | cluster.ClusterConfig:
    """The local broker (``KAFKA_BROKERS=1``) or cluster (``KAFKA_BROKERS=3``) that ``up`` runs."""
    return config_from_env(env) if brokers_from_env(env) == 1 else cluster_from_env(env)


def bootstrap_servers(env: dict[str, str] = os.environ) -> str:
    """What a client should use as bootstrap servers: an existing cluster named by ``KAFKA_BOOTSTRAP_SERVERS``,
    else every broker of the local broker or cluster, e.g. ``127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096``."""
    config = local_config(env)
    return external_cluster(config, env) or config.bootstrap_servers


def external_cluster(config: broker.BrokerConfig | cluster.ClusterConfig,
                     env: dict[str, str] = os.environ) -> str | None:
    """The bootstrap servers of an existing cluster the user pointed us at, if any."""
    servers = env.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    local = {config.bootstrap_servers, config.bootstrap_servers.replace(f"{config.host}:", "localhost:")}
    return servers if servers and servers not in local else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.kafka", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["fetch", "up", "down", "status", "run", "bootstrap"],
                        help="fetch: jars from Maven Central; up: start and wait until it answers "
                             "metadata requests; down: stop (the local broker and the local cluster); "
                             "status: say whether it answers; run: run in the foreground (for the process "
                             "manager); bootstrap: print the bootstrap servers for clients")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait in up/down (default 90)")
    parser.add_argument("--node", type=int, default=1,
                        help="run: which broker of a KAFKA_BROKERS=3 cluster to run (1-3; default 1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # the client's retries are not news here

    try:
        if brokers_from_env() > 1:
            return _cluster_command(args, cluster_from_env())
        config = config_from_env()
        external = external_cluster(config)
        if args.command == "fetch":
            broker.fetch_jars(config)
            print(f"Kafka jars ready in {config.lib_dir}")
        elif args.command == "run":
            broker.run_foreground(config)
        elif args.command == "bootstrap":
            print(external or config.bootstrap_servers)
        elif args.command == "up":
            if external:
                ok = broker.answers_metadata(external, timeout_s=args.timeout)
                print(f"using existing Kafka cluster {external}: {'answers' if ok else 'NOT reachable'}")
                return 0 if ok else 1
            pid = broker.start(config, timeout_s=args.timeout)
            print(f"Kafka up on {config.bootstrap_servers} (pid {pid}, log {config.log_file})")
        elif args.command == "down":
            stopped = broker.stop(config, timeout_s=args.timeout)
            if stopped:
                print("Kafka stopped")
            if not _stop_cluster(_three_brokers(), args.timeout) and not stopped:
                print("Kafka was not running")
        elif args.command == "status":
            servers = external or config.bootstrap_servers
            ok = broker.answers_metadata(servers)
            pid = None if external else broker.running_pid(config)
            where = f"pid {pid}" if pid else ("external" if external else "not started by this project")
            if not pid and not external and broker.running_pid(_three_brokers().node(1)):
                where = "broker 1 of the local 3-broker cluster; `make kafka-status KAFKA_BROKERS=3` shows all"
            print(f"kafka     {'up' if ok else 'down':5} {servers} ({where})")
            return 0 if ok else 3
    except (broker.BrokerError, KafkaSettingsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _three_brokers() -> cluster.ClusterConfig:
    """The local cluster's layout whatever KAFKA_BROKERS says: `down` and `status` find a cluster started earlier."""
    return cluster_from_env({**os.environ, "KAFKA_BROKERS": "3"})


def _cluster_command(args: argparse.Namespace, config: cluster.ClusterConfig) -> int:
    """``main`` for ``KAFKA_BROKERS=3``: the same commands for every broker of the local cluster."""
    external = external_cluster(config)
    if args.command == "fetch":
        broker.fetch_jars(config.node(1))
        print(f"Kafka jars ready in {config.lib_dir}")
    elif args.command == "run":
        if not 1 <= args.node <= len(config.nodes):
            raise KafkaSettingsError(f"--node {args.node} is out of range; expected 1 to {len(config.nodes)}")
        cluster.validate(config)
        broker.run_foreground(config.node(args.node), cluster_id=cluster.cluster_id(config))
    elif args.command == "bootstrap":
        print(external or config.bootstrap_servers)
    elif args.command == "up":
        if external:
            ok = broker.answers_metadata(external, timeout_s=args.timeout)
            print(f"using existing Kafka cluster {external}: {'answers' if ok else 'NOT reachable'}")
            return 0 if ok else 1
        pids = cluster.start(config, timeout_s=args.timeout)
        print(f"Kafka cluster up: {len(pids)} brokers (replication {config.replication_factor}, "
              f"min.insync.replicas={config.min_insync_replicas}); logs in {config.log_dir}/kafka-N.log")
        for node in config.nodes:
            print(f"  broker {node.node_id}  {node.bootstrap_servers}  pid {pids[node.node_id]}")
        print(f"clients: export KAFKA_BOOTSTRAP_SERVERS={config.bootstrap_servers}")
    elif args.command == "down":
        if broker.stop(config_from_env(), timeout_s=args.timeout):
            print("Kafka (single broker) stopped")
        if not _stop_cluster(config, args.timeout):
            print("Kafka cluster was not running")
    elif args.command == "status":
        return _cluster_status(config, external)
    return 0


def _stop_cluster(config: cluster.ClusterConfig, timeout_s: float) -> bool:
    """Stop the local cluster's running brokers; False when none ran."""
    stopped = cluster.stop(config, timeout_s=timeout_s)
    if stopped:
        print(f"Kafka cluster stopped (brokers {', '.join(map(str, stopped))})")
    return bool(stopped)


def _cluster_status(config: cluster.ClusterConfig, external: str | None) -> int:
    """One line per broker, then the cluster's view; 0 only when every broker answers and is registered."""
    if external:
        ok = broker.answers_metadata(external)
        print(f"kafka     {'up' if ok else 'down':5} {external} (external)")
        return 0 if ok else 3
    all_up = True
    for node in config.nodes:
        ok = broker.answers_metadata(node.bootstrap_servers)
        pid = broker.running_pid(node)
        all_up &= ok
        print(f"kafka-{node.node_id}   {'up' if ok else 'down':5} {node.bootstrap_servers} "
              f"({f'pid {pid}' if pid else 'not started by this project'})")
    registered = cluster.registered_brokers(config)
    print(f"cluster   {len(registered)}/{len(config.nodes)} brokers registered "
          f"({', '.join(map(str, sorted(registered))) or 'none'}); bootstrap {config.bootstrap_servers}")
    return 0 if all_up and len(registered) == len(config.nodes) else 3


if __name__ == "__main__":
    sys.exit(main())
