"""`make up` / `make status` / `make down` under supervisord, with the real services.

The whole stack runs once for this module in a temporary ``var/`` with its own ports, so a
developer's ``make up`` is never touched: each service is killed with SIGKILL in turn and must
answer again within 30 s while every other service's health check keeps answering; a scripted
conversation full of personal data must leave none of it in raw form anywhere on disk or in Kafka;
``down`` must also stop a service started by hand with the same command.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from infra.kafka import broker
from infra.procs import alive
from infra.services import all_services
from infra.supervisor import Paths, Supervisor

REPO_ROOT = Path(__file__).resolve().parents[2]
RESTART_LIMIT_S = 30.0
POLL_S = 0.5


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stack(command: str, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "infra.stack", command], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _stack_env(var: Path, kafka_port: int, **extra: str) -> dict[str, str]:
    env = {**os.environ, "TEXTML_VAR_DIR": str(var), "KAFKA_PORT": str(kafka_port),
           "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka_port}", **extra}
    for name in ("STACK_SERVICES", "TEXTML_RECOMMENDER_DIR", "CS_STATE_DIR", "CS_RASA_TOKEN", "CS_ACTIONS_TOKEN"):
        env.pop(name, None)
    env.update(extra)
    return env


@pytest.mark.slow
@pytest.mark.kafka
def test_up_supervises_kafka_and_down_stops_it(tmp_path: Path) -> None:
    port = int(os.environ.get("TEST_STACK_KAFKA_PORT", "19392"))
    # Kafka alone: quick, and it checks the start/stop path and idempotence
    env = _stack_env(tmp_path, port, STACK_SERVICES="kafka")
    servers = f"127.0.0.1:{port}"
    try:
        up = _stack("up", env)
        assert up.returncode == 0, up.stdout + up.stderr
        assert broker.answers_metadata(servers)
        assert re.search(rf"^kafka +RUNNING +\d+ +0:00:\d\d +0  up {servers}$", up.stdout, re.M), up.stdout
        config = (tmp_path / "run" / "supervisord.conf").read_text()
        assert "autorestart=true" in config and "chmod=0700" in config and "inet_http_server" not in config

        again = _stack("up", env)  # idempotent: nothing new starts
        assert again.returncode == 0, again.stdout + again.stderr
        assert (tmp_path / "log" / "kafka.log").read_text().count("Kafka Server started") == 1
    finally:
        down = _stack("down", env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "supervisord" in down.stdout
    assert not broker.answers_metadata(servers, timeout_s=2.0)
    status = _stack("status", env)
    assert status.returncode == 3 and re.search(r"^kafka +- .* down ", status.stdout, re.M), status.stdout


def test_bad_stack_settings_are_refused_before_anything_starts(tmp_path: Path) -> None:
    env = _stack_env(tmp_path, 19999, STACK_SERVICES="kafka,nope")
    result = _stack("status", env, timeout=60)
    assert result.returncode == 1 and "STACK_SERVICES names ['nope']" in result.stderr
    env = _stack_env(tmp_path, 19999, RECOMMENDER_PORT="80000")
    result = _stack("up", env, timeout=60)
    assert result.returncode == 1 and "RECOMMENDER_PORT='80000' is not a TCP port" in result.stderr
    assert not (tmp_path / "run" / "supervisord.pid").exists()


def test_chromium_install_pins_no_exact_version() -> None:
    """Debian's security archive keeps only the newest chromium build: an exact pin breaks within days."""
    script = (REPO_ROOT / "infra" / "browser" / "install-chromium.sh").read_text()
    code = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("#"))
    installs = re.findall(r"apt-get install[^\n]*", code)
    assert installs, "the script no longer installs chromium with apt-get"
    for line in installs:
        assert "=" not in line.split("install", 1)[1], f"an exact version in {line!r}"
    assert not re.search(r"chromium[=_]\d|CHROMIUM_VERSION", code), "a pinned chromium version"
    makefile = (REPO_ROOT / "Makefile").read_text()
    setup = re.search(r"^setup:([^#\n]*)", makefile, re.M).group(1)
    assert "browser" not in setup, "make demo (through make setup) must not need a browser"


# --- the whole stack ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    var = tmp_path_factory.mktemp("stack-var")
    ports = {"KAFKA_PORT": _free_port(), "FINANCE_METRICS_PORT": _free_port(), "RECOMMENDER_PORT": _free_port(),
             "CS_ACTIONS_PORT": _free_port(), "CS_RASA_PORT": _free_port()}
    env = _stack_env(var, ports["KAFKA_PORT"], **{k: str(v) for k, v in ports.items() if k != "KAFKA_PORT"})
    try:
        up = _stack("up", env)
        assert up.returncode == 0, up.stdout + up.stderr + _logs(var)
        yield {"var": var, "env": env, "ports": ports, "up": up.stdout}
    finally:
        down = _stack("down", env)
        assert down.returncode == 0, down.stdout + down.stderr


def _logs(var: Path) -> str:
    return "".join(f"\n--- {log.name}\n{log.read_text(errors='replace')[-2000:]}"
                   for log in sorted((var / "log").glob("*.log")))


def _healthy(url: str | None, kafka: str) -> bool:
    if url is None:
        return broker.answers_metadata(kafka, timeout_s=1.0)
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow
@pytest.mark.kafka
@pytest.mark.rasa
def test_each_service_killed_is_restarted_while_the_others_keep_answering(stack: dict) -> None:
    env = stack["env"]
    services = {s.name: s for s in all_services(env)}
    kafka = env["KAFKA_BOOTSTRAP_SERVERS"]
    supervisor = Supervisor(Paths(stack["var"]))
    restart_s: dict[str, float] = {}
    for name in ("finance", "recommender", "bot-actions", "bot-rasa", "kafka"):
        pid = supervisor.processes()[name]["pid"]
        os.kill(pid, signal.SIGKILL)
        killed, failures, polls = time.monotonic(), {}, 0
        while True:
            polls += 1
            for other, service in services.items():
                if other != name and not _healthy(service.health_url, kafka):
                    failures[other] = failures.get(other, 0) + 1
            info = supervisor.processes()[name]
            if info["pid"] not in (0, pid) and _healthy(services[name].health_url, kafka):
                restart_s[name] = round(time.monotonic() - killed, 1)
                break
            assert time.monotonic() - killed < RESTART_LIMIT_S, \
                f"{name} did not answer within {RESTART_LIMIT_S:.0f} s of SIGKILL:{_logs(stack['var'])}"
            time.sleep(POLL_S)
        assert failures == {}, f"while {name} restarted, health checks failed: {failures} (of {polls} polls)"
    (stack["var"] / "restart_times.json").write_text(json.dumps(restart_s))
    print(f"seconds from SIGKILL to answering again: {restart_s}")
    status = _stack("status", env, timeout=60)
    assert status.returncode == 0, status.stdout
    for name in services:
        assert re.search(rf"^{name} +RUNNING +\d+ +\S+ +1  up ", status.stdout, re.M), status.stdout


def _listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket ``pid`` listens on, from /proc (IPv4 and IPv6)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)  # 32-bit words in host (little-endian) order
            packed = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found.add((str(ipaddress.ip_address(packed)), int(port, 16)))
    return found


def _loopback(host: str) -> bool:
    address = ipaddress.ip_address(host)
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped and mapped.is_loopback)


@pytest.mark.slow
@pytest.mark.kafka
@pytest.mark.rasa
def test_every_service_listens_on_loopback_only(stack: dict) -> None:
    supervisor = Supervisor(Paths(stack["var"]))
    for name, info in supervisor.processes().items():
        sockets = _listening(info["pid"])
        assert sockets, f"{name} (pid {info['pid']}) listens on nothing"
        outside = {(host, port) for host, port in sockets if not _loopback(host)}
        assert not outside, f"{name} listens beyond loopback: {sorted(outside)}"


PII = {
    "card": ["4111 1111 1111 1111", "4111111111111111", "4111-1111-1111-1111"],
    "iban": ["GB82 WEST 1234 5698 7654 32", "GB82WEST12345698765432"],
    "email": ["jane.doe@example.com"],
    "phone": ["+44 20 7946 0958", "442079460958", "2079460958"],
}
CONVERSATION = (
    "I lost my card",
    "4111 1111 1111 1111",
    "my card number is 4111-1111-1111-1111",
    "1111",
    "this morning",
    "yes",
    "please send the refund to GB82 WEST 1234 5698 7654 32, I am jane.doe@example.com",
    "call me on +44 20 7946 0958",
    "I want to talk to a person",
)


def _kafka_texts(servers: str) -> list[str]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=servers, auto_offset_reset="earliest", enable_auto_commit=False,
                             group_id=None, consumer_timeout_ms=5000)
    topics = sorted(consumer.topics())
    consumer.subscribe(topics)
    texts = [f"{r.key!r} {r.value!r}" for r in consumer]
    consumer.close()
    return [f"topics: {topics}", *texts]


def _sqlite_texts(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return [repr(row) for table in tables for row in db.execute(f'SELECT * FROM "{table}"')]


@pytest.mark.slow
@pytest.mark.kafka
@pytest.mark.rasa
def test_personal_data_is_stored_nowhere_in_raw_form(stack: dict) -> None:
    rasa = f"http://127.0.0.1:{stack['ports']['CS_RASA_PORT']}"
    sender = f"pii-{uuid.uuid4().hex[:6]}"
    replies = {}
    for text in CONVERSATION:
        response = httpx.post(f"{rasa}/webhooks/rest/webhook", json={"sender": sender, "message": text}, timeout=60)
        assert response.status_code == 200, response.text
        replies[text] = " ".join(m.get("text") or "" for m in response.json())
    assert "only the last four digits" in replies["4111 1111 1111 1111"], replies

    var = stack["var"]
    places: dict[str, list[str]] = {}
    trackers = list(var.rglob("tracker*.sqlite3")) + list(var.rglob("tracker*.db"))
    assert trackers, f"no tracker store under {var}"
    assert list(var.rglob("tickets*.sqlite3")), f"no tickets database under {var}"
    logs = {path.name for path in (var / "log").glob("*.log*")}
    assert {"bot-rasa.log", "bot-actions.log", "supervisord.log"} <= logs, logs
    for path in (p for p in var.rglob("*") if p.is_file() and not p.is_socket()):
        places[str(path)] = [path.read_bytes().decode("latin-1")]  # every byte on disk: logs, Kafka's segments
        if path.suffix in (".sqlite3", ".db"):
            places[f"{path} (tables)"] = _sqlite_texts(path)
    places["kafka"] = _kafka_texts(stack["env"]["KAFKA_BOOTSTRAP_SERVERS"])

    tracker_texts = [text for path in trackers for text in places[f"{path} (tables)"]]
    assert any(sender in text for text in tracker_texts), "the conversation is not in the tracker store"
    assert any("[CARD ****1111]" in text for text in tracker_texts)
    found = {(kind, raw, where) for where, texts in places.items() for text in texts
             for kind, forms in PII.items() for raw in forms if raw in text}
    counts = {kind: sum(1 for k, *_ in found if k == kind) for kind in PII}
    print(f"raw personal data found: {counts} in {len(places)} places scanned")
    assert not found, f"raw personal data stored: {sorted(found)}"


@pytest.mark.slow
@pytest.mark.kafka
@pytest.mark.rasa
def test_down_also_stops_a_service_started_by_hand(stack: dict) -> None:
    env = {**stack["env"], "TEXTML_RECOMMENDER_DIR": str(stack["var"] / "recommender-by-hand")}
    port = _free_port()
    log = open(stack["var"] / "log" / "by-hand.log", "ab")
    process = subprocess.Popen([sys.executable, "-m", "apps.recommender", "serve", "--port", str(port)],
                               cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while not _healthy(f"http://127.0.0.1:{port}/health", ""):
        assert process.poll() is None and time.monotonic() < deadline, _logs(stack["var"])
        time.sleep(0.5)
    down = _stack("down", stack["env"])
    assert down.returncode == 0, down.stdout + down.stderr
    assert f"recommender started by hand (pid {process.pid}) stopped" in down.stdout, down.stdout
    assert process.wait(timeout=10) is not None and not alive(process.pid)
    for service in all_services(stack["env"]):
        assert not _healthy(service.health_url, stack["env"]["KAFKA_BOOTSTRAP_SERVERS"]), service.name
