"""PostgreSQL and Redis from Debian's packages under ``make up``: real servers, no mocks.

The two data stores run under supervisord in a temporary ``var/`` on free ports
(``STACK_SERVICES=postgres,redis``, so neither Kafka nor the apps start): the ``rasa`` role logs in
with its generated password over TCP and a wrong one is refused; Redis refuses commands before
``AUTH``; both listen on loopback only, never as root, with their passwords in 0600 files and on no
command line; each comes back within 30 s of SIGKILL; ``down`` stops them and the same servers
started by hand.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra import postgres, redis_server
from infra.procs import alive, argv_of
from infra.services import all_services, known_services
from infra.supervisor import Paths, Supervisor
from tests.infra.datastore_servers import REPO_ROOT
from tests.infra.datastore_servers import env_for as _env
from tests.infra.datastore_servers import logs as _logs
from tests.infra.datastore_servers import new_var as _var
from tests.infra.datastore_servers import stack as _stack
from tests.infra.test_stack import _free_port, _listening, _loopback

RESTART_LIMIT_S = 30.0


@pytest.fixture(scope="module")
def stores(datastore_binaries: None) -> Iterator[dict]:
    var = _var()
    env = _env(var, STACK_SERVICES="postgres,redis", POSTGRES_PORT=str(_free_port()), REDIS_PORT=str(_free_port()))
    try:
        up = _stack("up", env)
        assert up.returncode == 0, up.stdout + up.stderr + _logs(var)
        pg = postgres.config_from_env(env, var)
        redis = redis_server.config_from_env(env, var)
        yield {"var": var, "env": env, "up": up.stdout, "pg": pg, "redis": redis,
               "pg_password": (var / "secrets" / "postgres_password").read_text().strip(),
               "redis_password": (var / "secrets" / "redis_password").read_text().strip()}
    finally:
        down = _stack("down", env)
        shutil.rmtree(var, ignore_errors=True)
        assert down.returncode == 0, down.stdout + down.stderr


def test_data_stores_start_only_when_configured() -> None:
    names = [s.name for s in all_services({})]
    assert "postgres" not in names and "redis" not in names, "the default stack runs on SQLite"
    names = [s.name for s in all_services({"CS_TRACKER_STORE": "postgresql", "CS_LOCK_STORE": "redis"})]
    assert names.index("postgres") < names.index("bot-rasa") and names.index("redis") < names.index("bot-rasa")
    assert {"postgres", "redis"} <= {s.name for s in known_services({})}  # `make down` knows them anyway


def test_the_installer_pins_no_version_and_setup_does_not_need_it() -> None:
    script = (REPO_ROOT / "infra" / "apt-install.sh").read_text()
    code = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("#"))
    installs = re.findall(r"apt-get install[^\n]*", code)
    assert installs and all("=" not in line.split("install", 1)[1] for line in installs), installs
    makefile = (REPO_ROOT / "Makefile").read_text()
    for target in ("setup", "demo"):
        assert "datastores" not in re.search(rf"^{target}:([^#\n]*)", makefile, re.M).group(1)
    assert "datastores" in re.search(r"^test:([^#\n]*)", makefile, re.M).group(1)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root switches to the postgres user")
def test_a_var_folder_the_postgres_user_cannot_reach_is_refused(tmp_path: Path, datastore_binaries: None) -> None:
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    result = subprocess.run([sys.executable, "-m", "infra.postgres", "init"], cwd=REPO_ROOT, capture_output=True,
                            text=True, env=_env(closed / "var"), timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(r"does not let the 'postgres' user reach .*chmod o\+x", result.stderr), result.stderr


@pytest.mark.slow
def test_up_starts_both_and_status_reports_them(stores: dict) -> None:
    assert "postgres answers" in stores["up"] and "redis answers" in stores["up"], stores["up"]
    status = _stack("status", stores["env"])
    assert status.returncode == 0, status.stdout
    assert re.search(rf"^postgres +\S+ +\d+ .* up postgresql://rasa@127.0.0.1:{stores['pg'].port}/rasa$",
                     status.stdout, re.M), status.stdout
    assert re.search(rf"^redis +\S+ +\d+ .* up redis://127.0.0.1:{stores['redis'].port}$", status.stdout, re.M)


@pytest.mark.slow
def test_postgres_admits_rasa_with_its_password_only(stores: dict) -> None:
    pg, secret = stores["pg"], stores["pg_password"]
    ok = postgres.psql(pg, secret, "SELECT current_user || '@' || current_database()")
    assert ok.returncode == 0 and ok.stdout.strip() == "rasa@rasa", ok.stderr
    wrong = postgres.psql(pg, secret + "x", "SELECT 1")
    assert wrong.returncode != 0 and 'password authentication failed for user "rasa"' in wrong.stderr
    superuser = postgres.psql(pg, secret, "SELECT 1", role="postgres")
    assert superuser.returncode != 0 and "no pg_hba.conf entry" in superuser.stderr, superuser.stderr


@pytest.mark.slow
def test_redis_refuses_commands_before_auth(stores: dict) -> None:
    port, secret = stores["redis"].port, stores["redis_password"]
    assert redis_server.ask(port, ("PING",)) == ["-NOAUTH Authentication required."]
    assert redis_server.ask(port, ("AUTH", "wrong"), ("SET", "k", "v"))[1].startswith("-NOAUTH")
    assert redis_server.ask(port, ("AUTH", secret), ("PING",)) == ["+OK", "+PONG"]


@pytest.mark.slow
def test_loopback_only_not_root_and_no_password_on_a_command_line(stores: dict) -> None:
    var = stores["var"]
    processes = Supervisor(Paths(var)).processes()
    for name in ("postgres", "redis"):
        pid = processes[name]["pid"]
        sockets = _listening(pid)
        assert sockets and all(_loopback(host) for host, _ in sockets), f"{name} listens on {sorted(sockets)}"
        owner = Path(f"/proc/{pid}").stat().st_uid
        assert owner != 0, f"{name} runs as root"
        words = " ".join(argv_of(pid))
        assert stores["pg_password"] not in words and stores["redis_password"] not in words, words
    secrets = var / "secrets"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    for path in (secrets / "postgres_password", secrets / "redis_password", var / "redis" / "redis.conf"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, f"{path} is {oct(path.stat().st_mode)}"
    assert stat.S_IMODE((var / "postgres" / "data").stat().st_mode) == 0o700


@pytest.mark.slow
def test_each_store_killed_is_restarted_and_answers_again(stores: dict) -> None:
    supervisor = Supervisor(Paths(stores["var"]))
    checks = {"postgres": lambda: postgres.answers(stores["pg"], stores["env"]),
              "redis": lambda: redis_server.answers(stores["redis"], stores["env"])}
    took = {}
    for name, answers in checks.items():
        pid = supervisor.processes()[name]["pid"]
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        while not (supervisor.processes()[name]["pid"] not in (0, pid) and answers()):
            assert time.monotonic() - killed < RESTART_LIMIT_S, \
                f"{name} did not answer within {RESTART_LIMIT_S:.0f} s of SIGKILL:{_logs(stores['var'])}"
            time.sleep(0.5)
        took[name] = round(time.monotonic() - killed, 1)
    print(f"seconds from SIGKILL to answering again: {took}")


@pytest.mark.slow
def test_down_stops_them_and_the_same_servers_started_by_hand(stores: dict) -> None:
    env = stores["env"]
    down = _stack("down", env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not postgres.answers(stores["pg"], env) and not redis_server.answers(stores["redis"], env)

    var = _var()
    hand_env = _env(var, POSTGRES_PORT=str(_free_port()), REDIS_PORT=str(_free_port()))
    started: dict[str, subprocess.Popen] = {}
    try:
        for module in ("infra.postgres", "infra.redis_server"):
            started[module] = subprocess.Popen([sys.executable, "-m", module, "run"], cwd=REPO_ROOT, env=hand_env,
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                               start_new_session=True)
        pg, redis = postgres.config_from_env(hand_env, var), redis_server.config_from_env(hand_env, var)
        deadline = time.monotonic() + 60
        while not (postgres.answers(pg, hand_env) and redis_server.answers(redis, hand_env)):
            assert time.monotonic() < deadline, "the servers started by hand did not answer"
            time.sleep(0.5)
        down = _stack("down", hand_env)
        assert down.returncode == 0, down.stdout + down.stderr
        for name, module in (("postgres", "infra.postgres"), ("redis", "infra.redis_server")):
            pid = started[module].pid
            assert f"{name} started by hand (pid {pid}) stopped" in down.stdout, down.stdout
            assert started[module].wait(timeout=10) is not None and not alive(pid)
    finally:
        for process in started.values():
            if process.poll() is None:
                process.kill()
        shutil.rmtree(var, ignore_errors=True)
