"""``python -m infra.stack up|down|status``: all long-lived services under honcho.

The Procfile names the services; honcho runs them in one process group, each writing its
own log under ``var/log/``. ``up`` returns once every started service is ready (Kafka:
answers metadata requests); ``down`` stops honcho (which stops its children) and a broker
that ``make kafka-up`` started on its own.

A Kafka cluster that already answers (``make kafka-up`` earlier, or an existing cluster
named by ``KAFKA_BOOTSTRAP_SERVERS``) is used as it is: honcho does not start a second one.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from infra.kafka import broker
from infra.kafka.__main__ import config_from_env, external_cluster, var_dir
from infra.procs import alive, tail

REPO_ROOT = broker.REPO_ROOT
PROCFILE = REPO_ROOT / "Procfile"
RUN_DIR = var_dir() / "run"
LOG_DIR = var_dir() / "log"
HONCHO_PID = RUN_DIR / "honcho.pid"


def procfile_services(procfile: Path = PROCFILE) -> list[str]:
    """Service names in Procfile order (Kafka first by convention); ``STACK_SERVICES=a,b`` keeps only those."""
    names = []
    for line in procfile.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and ":" in line:
            names.append(line.split(":", 1)[0].strip())
    wanted = [name.strip() for name in os.environ.get("STACK_SERVICES", "").split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        raise SystemExit(f"error: STACK_SERVICES names {unknown}, which the Procfile does not have; "
                         f"services: {', '.join(names)}")
    return [name for name in names if name in wanted] if wanted else names


def honcho_pid() -> int | None:
    try:
        pid = int(HONCHO_PID.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ValueError):
        return None
    return pid if b"honcho" in cmdline else None


def up(timeout_s: float) -> int:
    kafka = config_from_env()
    servers = external_cluster(kafka) or kafka.bootstrap_servers
    if honcho_pid() is not None:
        print(f"stack already running under honcho (pid {honcho_pid()})")
    else:
        services = procfile_services()
        if "kafka" in services and broker.answers_metadata(servers, timeout_s=2.0):
            print(f"Kafka already answers on {servers}: honcho will not start another broker")
            services.remove("kafka")
        if services:
            _start_honcho(services)
    _wait_until_ready(servers, timeout_s)
    return status()


def _wait_until_ready(kafka_servers: str, timeout_s: float) -> None:
    """Wait until Kafka answers metadata requests; fail fast when honcho (and so a service) died."""
    deadline = time.monotonic() + timeout_s
    while not broker.answers_metadata(kafka_servers, timeout_s=2.0):
        if HONCHO_PID.exists() and honcho_pid() is None:
            raise broker.BrokerError(f"a service exited during start-up; see {LOG_DIR}/honcho.log and "
                                     f"{LOG_DIR}/kafka.log:\n{tail(LOG_DIR / 'honcho.log')}")
        if time.monotonic() > deadline:
            raise broker.BrokerError(f"Kafka did not answer on {kafka_servers} within {timeout_s:.0f} s; "
                                     f"see {LOG_DIR}/kafka.log")
        time.sleep(0.5)


def _start_honcho(services: list[str]) -> None:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    honcho = Path(sys.executable).with_name("honcho")
    with open(LOG_DIR / "honcho.log", "ab") as log_stream:
        process = subprocess.Popen(
            [str(honcho), "--no-colour", "-f", str(PROCFILE), "-d", str(REPO_ROOT), "start", *services],
            stdout=log_stream, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env={**os.environ, "PYTHON": sys.executable, "LOG_DIR": str(LOG_DIR)},
        )
    HONCHO_PID.write_text(str(process.pid))
    print(f"honcho started {', '.join(services)} (pid {process.pid}); logs in {LOG_DIR}/")


def down(timeout_s: float) -> int:
    pid = honcho_pid()
    if pid is not None:
        os.kill(pid, signal.SIGTERM)  # honcho forwards it to every service and waits
        deadline = time.monotonic() + timeout_s
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if alive(pid):
            os.killpg(pid, signal.SIGKILL)
        print(f"honcho (pid {pid}) and its services stopped")
    HONCHO_PID.unlink(missing_ok=True)
    if broker.stop(config_from_env(), timeout_s=timeout_s):
        print("Kafka stopped")
    return 0


def status() -> int:
    kafka = config_from_env()
    pid = honcho_pid()
    print(f"honcho    {'up' if pid else 'down':5} {f'pid {pid}' if pid else ''}")
    servers = external_cluster(kafka) or kafka.bootstrap_servers
    ok = broker.answers_metadata(servers)
    kafka_pid = broker.running_pid(kafka)
    origin = f"pid {kafka_pid}" if kafka_pid else ("external cluster" if external_cluster(kafka) else "")
    print(f"kafka     {'up' if ok else 'down':5} {servers} {origin}")
    for name, url in _health_urls().items():
        if name in procfile_services():
            print(f"{name:9} {'up' if _answers(url) else 'down':5} {url}")
    print(f"logs      {LOG_DIR}/")
    return 0 if ok else 3


def _health_urls() -> dict[str, str]:
    """Where each app service answers when it is ready (ports from the apps' own settings variables)."""
    env = os.environ.get
    return {
        "finance": f"http://127.0.0.1:{env('FINANCE_METRICS_PORT', '9464')}/metrics",
        "recommender": "http://127.0.0.1:8300/health",
        "bot-actions": f"http://127.0.0.1:{env('CS_ACTIONS_PORT', '5055')}/health",
        "bot-rasa": f"http://127.0.0.1:{env('CS_RASA_PORT', '5005')}/status",
    }


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.stack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for start or stop (default 120)")
    args = parser.parse_args(argv)
    try:
        return {"up": up, "down": down}.get(args.command, lambda _: status())(args.timeout)
    except broker.BrokerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
