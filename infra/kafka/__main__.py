"""``python -m infra.kafka fetch|up|down|status|run``: the project's local Kafka broker.

Environment (read here only):
  KAFKA_PORT               client port of the local broker (default 9092)
  KAFKA_CONTROLLER_PORT    KRaft controller port (default KAFKA_PORT + 1)
  KAFKA_STATE_DIR          where server.properties and the data live (default var/kafka/node)
  KAFKA_HEAP               JVM heap (default 768m)
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

from infra.kafka import broker


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


def external_cluster(config: broker.BrokerConfig, env: dict[str, str] = os.environ) -> str | None:
    """The bootstrap servers of an existing cluster the user pointed us at, if any."""
    servers = env.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    local = {config.bootstrap_servers, f"localhost:{config.port}"}
    return servers if servers and servers not in local else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.kafka", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["fetch", "up", "down", "status", "run"],
                        help="fetch: jars from Maven Central; up: start and wait until it answers "
                             "metadata requests; down: stop; status: say whether it answers; "
                             "run: run in the foreground (for the process manager)")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait in up/down (default 90)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # the client's retries are not news here
    config = config_from_env()
    external = external_cluster(config)

    try:
        if args.command == "fetch":
            broker.fetch_jars(config)
            print(f"Kafka jars ready in {config.lib_dir}")
        elif args.command == "run":
            broker.run_foreground(config)
        elif args.command == "up":
            if external:
                ok = broker.answers_metadata(external, timeout_s=args.timeout)
                print(f"using existing Kafka cluster {external}: {'answers' if ok else 'NOT reachable'}")
                return 0 if ok else 1
            pid = broker.start(config, timeout_s=args.timeout)
            print(f"Kafka up on {config.bootstrap_servers} (pid {pid}, log {config.log_file})")
        elif args.command == "down":
            stopped = broker.stop(config, timeout_s=args.timeout)
            print("Kafka stopped" if stopped else "Kafka was not running")
        elif args.command == "status":
            servers = external or config.bootstrap_servers
            ok = broker.answers_metadata(servers)
            pid = None if external else broker.running_pid(config)
            where = f"pid {pid}" if pid else ("external" if external else "not started by this project")
            print(f"kafka     {'up' if ok else 'down':5} {servers} ({where})")
            return 0 if ok else 3
    except broker.BrokerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
