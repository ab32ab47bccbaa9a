"""``python -m infra.stack up|down|status``: the long-lived services under supervisord.

``up`` starts supervisord (``infra/supervisor.py``) and then the services of ``infra/services.py``
in order: Kafka first, and its clients once it answers metadata requests; it returns when every
service answers its health check. A service that exits is restarted by supervisord while the
others keep serving. ``status`` shows each service's state, pid, uptime, restart count and health.
``down`` stops supervisord and its services, a broker ``make kafka-up`` started, and the same
service commands started by hand for this checkout's ``var/``.

A Kafka cluster that already answers (``make kafka-up`` earlier, or an existing cluster named by
``KAFKA_BOOTSTRAP_SERVERS``) is used as it is: no second broker starts.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from infra.kafka import broker
from infra.kafka.__main__ import config_from_env, external_cluster
from infra.procs import alive, all_pids, argv_of, cwd_of, environ_of, tail
from infra.services import (
    REPO_ROOT,
    Service,
    ServiceConfigError,
    all_services,
    known_services,
    selected_services,
    var_dir,
)
from infra.supervisor import START_RETRIES, Paths, Supervisor, SupervisorError, render_config

START_TIMEOUT_S = 900.0  # a first start trains the demo sentiment model and the Rasa model


class StackError(RuntimeError):
    """A service did not come up; the message names it and its log."""


def _paths() -> Paths:
    return Paths(var_dir(dict(os.environ)))


def _kafka_servers() -> str:
    kafka = config_from_env()
    return external_cluster(kafka) or kafka.bootstrap_servers


def answers(url: str, timeout_s: float = 2.0) -> bool:
    """True when ``url`` answers 200 (a service's health check)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status == 200
    except OSError:
        return False


def healthy(service: Service) -> bool:
    if service.probe is not None:
        return service.probe()
    return broker.answers_metadata(_kafka_servers(), timeout_s=2.0) if service.health_url is None \
        else answers(service.health_url)


def up(timeout_s: float = START_TIMEOUT_S) -> int:
    paths = _paths()
    services = selected_services()
    kafka_servers = _kafka_servers()
    supervised = list(services)
    if any(s.name == "kafka" for s in services) and (
            external_cluster(config_from_env()) or broker.answers_metadata(kafka_servers, timeout_s=2.0)):
        print(f"Kafka already answers on {kafka_servers}: no broker of ours starts")
        supervised = [s for s in services if s.name != "kafka"]
    environment = {"TEXTML_VAR_DIR": str(paths.var_dir), "PYTHONUNBUFFERED": "1",
                   # the recommender's store follows var/ unless set (its own default ignores TEXTML_VAR_DIR)
                   "TEXTML_RECOMMENDER_DIR": os.environ.get("TEXTML_RECOMMENDER_DIR",
                                                            str(paths.var_dir / "recommender"))}
    supervisor = Supervisor(paths)
    for service in supervised:
        _prepare(service)
    pid = supervisor.start(render_config(paths, all_services(), environment))
    print(f"supervisord (pid {pid}) supervises {', '.join(s.name for s in supervised) or 'nothing'}; "
          f"logs in {paths.log_dir}/")
    deadline = time.monotonic() + timeout_s
    first = [s for s in supervised if s.name == "kafka" or s.before_apps]  # Kafka and the data stores
    for service in first:
        supervisor.start_program(service.name)
    _wait(supervisor, first, deadline)
    if not any(s.name == "kafka" for s in supervised) and any(s.needs_kafka for s in supervised):
        _wait_for_external_kafka(kafka_servers, deadline)
    rest = [s for s in supervised if s not in first]
    for service in rest:
        supervisor.start_program(service.name)
    _wait(supervisor, rest, deadline)
    return status()


def _prepare(service: Service) -> None:
    """Run a service's one-off preparation (a data store's cluster, config and password) before it starts."""
    if not service.prepare:
        return
    result = subprocess.run(service.prepare, cwd=REPO_ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise StackError(f"{service.name} could not be prepared (`{' '.join(service.prepare[1:])}` exited "
                         f"{result.returncode}):\n{(result.stdout + result.stderr).strip()}")


def _wait_for_external_kafka(servers: str, deadline: float) -> None:
    while not broker.answers_metadata(servers, timeout_s=2.0):
        if time.monotonic() > deadline:
            raise StackError(f"Kafka does not answer on {servers}; its clients were not started")
        time.sleep(1.0)


def _wait(supervisor: Supervisor, services: list[Service], deadline: float) -> None:
    """Until each service answers its health check; fail fast when supervisord gives one up (FATAL)."""
    waiting = {s.name: s for s in services}
    reported = time.monotonic()
    while waiting:
        for name, service in list(waiting.items()):
            if healthy(service):
                print(f"  {name} answers")
                del waiting[name]
        if not waiting:
            return
        states = supervisor.processes()
        for name in waiting:
            if states.get(name, {}).get("statename") == "FATAL":
                log = supervisor.paths.log_dir / f"{name}.log"
                raise StackError(f"{name} failed to start {START_RETRIES} times; last lines of {log}:\n"
                                 f"{tail(log)}")
        if time.monotonic() > deadline:
            raise StackError(f"{', '.join(waiting)} did not answer in time; see {supervisor.paths.log_dir}/")
        if time.monotonic() - reported > 30:
            print(f"  still waiting for {', '.join(waiting)} (a first start trains models; logs in "
                  f"{supervisor.paths.log_dir}/)", flush=True)
            reported = time.monotonic()
        time.sleep(0.5)


def down(timeout_s: float = 120.0) -> int:
    paths = _paths()
    supervisor = Supervisor(paths)
    pid = supervisor.pid()
    if supervisor.shutdown(timeout_s):
        print(f"supervisord (pid {pid}) and its services stopped")
    if broker.stop(config_from_env(), timeout_s=timeout_s):
        print("Kafka (from make kafka-up) stopped")
    for service, process in hand_started(paths.var_dir):
        _terminate(process, timeout_s, getattr(signal, f"SIG{service.stop_signal}"))
        print(f"{service.name} started by hand (pid {process}) stopped")
    return 0


def hand_started(var: Path) -> list[tuple[Service, int]]:
    """Processes running a service's command for this checkout and this ``var/`` that supervisord does not own."""
    found = []
    services = known_services(dict(os.environ))
    for pid in all_pids():
        if pid == os.getpid():
            continue
        argv = argv_of(pid)
        service = next((s for s in services if s.matches(argv)), None)
        if service is not None and _belongs(pid, argv, var):
            found.append((service, pid))
    return found


def _belongs(pid: int, argv: list[str], var: Path) -> bool:
    """Whether ``pid`` runs from this checkout with ``var`` as its runtime folder."""
    cwd = cwd_of(pid) or Path("/")
    words = [os.path.normpath(cwd / word) for word in argv if "/" in word]
    if any(Path(word).is_relative_to(var) for word in words):  # e.g. Kafka's server.properties, Rasa's model
        return True
    if not any(Path(word).is_relative_to(REPO_ROOT) for word in words[:2]) and not cwd.is_relative_to(REPO_ROOT):
        return False
    env = environ_of(pid)
    own_var = Path(os.path.normpath(cwd / env["TEXTML_VAR_DIR"])) if env.get("TEXTML_VAR_DIR") else REPO_ROOT / "var"
    return own_var.resolve() == var


def _terminate(pid: int, timeout_s: float, stop_signal: int = signal.SIGTERM) -> None:
    try:
        os.kill(pid, stop_signal)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)


def _uptime(info: dict) -> str:
    if info.get("statename") != "RUNNING" or not info.get("start"):
        return "-"
    seconds = int(info["now"] - info["start"])
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def status() -> int:
    paths = _paths()
    supervisor = Supervisor(paths)
    pid = supervisor.pid()
    processes = supervisor.processes() if pid is not None and supervisor.answers() else {}
    spawns = supervisor.spawn_counts() if processes else {}
    print(f"supervisord {'up, pid ' + str(pid) if processes else 'down'}; logs in {paths.log_dir}/")
    print(f"{'service':12} {'state':9} {'pid':>7} {'uptime':>9} {'restarts':>8}  health")
    all_ok = True
    for service in selected_services():
        info = processes.get(service.name, {})
        ok = healthy(service)
        all_ok &= ok
        state = info.get("statename", "-")
        where = service.address or service.health_url or _kafka_servers()
        if service.name == "kafka" and state in ("-", "STOPPED") and ok:
            state = "external" if external_cluster(config_from_env()) else "unsupervised"
        print(f"{service.name:12} {state:9} {info.get('pid') or '-':>7} {_uptime(info):>9} "
              f"{max(spawns.get(service.name, 0) - 1, 0):>8}  {'up' if ok else 'down'} {where}")
    return 0 if all_ok else 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.stack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--timeout", type=float, help=f"seconds to wait for start (default {START_TIMEOUT_S:.0f}) "
                                                      "or stop (default 120)")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            return up(args.timeout or START_TIMEOUT_S)
        if args.command == "down":
            return down(args.timeout or 120.0)
        return status()
    except (StackError, SupervisorError, ServiceConfigError, broker.BrokerError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
