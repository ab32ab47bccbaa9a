"""Replicas: two Rasa servers and two action servers sharing a PostgreSQL tracker store and a Redis lock store.

Real servers, no mocks: PostgreSQL and Redis from Debian's packages run under ``python -m infra.stack``
in a temporary ``var/`` on free ports (``STACK_SERVICES=postgres,redis``); the bot reads
``CS_TRACKER_STORE=postgresql`` / ``CS_LOCK_STORE=redis`` and the passwords infra generated there.
Each Rasa server has its own state folder (its assembled project, its action server) and the same
tokens; the model is trained once. One conversation alternates between the two servers' REST
webhooks and completes the lost-card form: the confirmation names the digits and the time given
on the other server. The conversation is in PostgreSQL (Rasa's API on either server shows all of it,
the ``events`` table has it, the SQLite file was never created) with no raw card number, and both
servers took their locks in Redis.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from apps.customer_service.ingest import ingest
from apps.customer_service.launch import (
    actions_ready,
    free_port,
    rasa_ready,
    start_service,
    stop_service,
)
from apps.customer_service.rasa_project import model_path, train, trained_config
from apps.customer_service.settings import APP_DIR, settings_from_env
from infra import postgres, redis_server
from tests.apps.customer_service.test_bot_e2e import raw_personal_data, texts, wait_for
from tests.infra.datastore_servers import env_for, logs, new_var, stack

pytestmark = [pytest.mark.rasa, pytest.mark.slow]
SENDER = "replica-customer"


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, embedder, datastore_binaries: None) -> Iterator[dict]:
    started = time.monotonic()
    var = new_var()
    tokens = {"CS_RASA_TOKEN": secrets.token_urlsafe(24), "CS_ACTIONS_TOKEN": secrets.token_urlsafe(24)}
    stores = env_for(var, STACK_SERVICES="postgres,redis", POSTGRES_PORT=str(free_port()),
                     REDIS_PORT=str(free_port()))
    processes = []
    try:
        up = stack("up", stores)
        assert up.returncode == 0, up.stdout + up.stderr + logs(var)
        bots = []
        for name in ("a", "b"):
            state = tmp_path_factory.mktemp(f"replica-{name}")
            env = {**stores, **tokens, "CS_STATE_DIR": str(state), "CS_ACTIONS_PORT": str(free_port()),
                   "CS_RASA_PORT": str(free_port()), "CS_EMBEDDER": "all-MiniLM-L6-v2", "CS_RERANKER": "none",
                   "CS_INTENT_MODEL": "retrieval", "HF_HUB_OFFLINE": "1", "TEXTML_NUM_THREADS": "1",
                   "CS_TRACKER_STORE": "postgresql", "CS_LOCK_STORE": "redis"}
            env.pop("STACK_SERVICES")
            bots.append({"name": name, "env": env, "settings": settings_from_env(env), "state": state})
        first, second = bots
        ingest(APP_DIR / "knowledge", first["settings"].index_dir, "all-MiniLM-L6-v2", embedder=embedder)
        shutil.copytree(first["settings"].index_dir, second["settings"].index_dir)
        for bot in bots:  # they load their models while Rasa trains
            bot["actions_log"] = bot["state"] / "actions.log"
            bot["actions"] = start_service("actions", bot["actions_log"], bot["env"])
            processes.append(bot["actions"])
        train(first["settings"])  # once: the second server gets the same model (and the config it was trained with)
        models = model_path(second["settings"]).parent
        models.mkdir(parents=True)
        for path in (model_path(first["settings"]), trained_config(first["settings"])):
            shutil.copy2(path, models / path.name)
        for bot in bots:  # both start at once: Rasa's start-up is the slow part
            bot["rasa_log"] = bot["state"] / "rasa.log"
            bot["rasa"] = start_service("rasa", bot["rasa_log"], bot["env"])
            processes.append(bot["rasa"])
        for bot in bots:
            url, log = bot["settings"].actions_url, bot["actions_log"]
            wait_for(lambda url=url: actions_ready(url), bot["actions"], log, f"action server {bot['name']}")
            url, log = bot["settings"].rasa_url, bot["rasa_log"]
            wait_for(lambda url=url, log=log: rasa_ready(url, log, tokens["CS_RASA_TOKEN"]), bot["rasa"], log,
                  f"Rasa server {bot['name']}")
        print(f"stores + 2 action servers + training + 2 Rasa servers ready in {time.monotonic() - started:.0f} s")
        yield {"bots": bots, "var": var, "stores": stores, "token": tokens["CS_RASA_TOKEN"],
               "pg": postgres.config_from_env(stores, var), "redis": redis_server.config_from_env(stores, var)}
    finally:
        for process in reversed(processes):
            stop_service(process)
        down = stack("down", stores)
        shutil.rmtree(var, ignore_errors=True)
        assert down.returncode == 0, down.stdout + down.stderr


def say(bot: dict, text: str) -> str:
    reply = httpx.post(f"{bot['settings'].rasa_url}/webhooks/rest/webhook", json={"sender": SENDER, "message": text},
                       timeout=60)
    reply.raise_for_status()
    return texts(reply.json())


def redis_info(port: int, secret: str, section: str) -> str:
    """``INFO section`` after ``AUTH``: the bulk reply's text."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(f"AUTH {secret}\r\nINFO {section}\r\n".encode())
        reader = connection.makefile("rb")
        assert reader.readline().strip() == b"+OK"
        size = int(reader.readline().strip()[1:])
        return reader.read(size).decode()


def test_a_conversation_alternating_between_replicas_completes_the_form(replicas: dict) -> None:
    a, b = replicas["bots"]
    assert a["settings"].rasa_port != b["settings"].rasa_port
    assert "last four digits" in say(a, "I lost my card")
    assert "Never share your full card number" in say(b, "4111 1111 1111 1111")  # masked before it is stored
    assert "When did you lose it" in say(a, "4321")
    assert "block the card ending 4321" in say(b, "this morning")
    assert "card ending 4321 (lost this morning) is blocked" in say(a, "yes")  # slots given on both servers

    for bot in (a, b):  # Rasa's API on either server shows the whole conversation
        tracker = httpx.get(f"{bot['settings'].rasa_url}/conversations/{SENDER}/tracker",
                            params={"token": replicas["token"]}, timeout=30).json()
        users = [e["text"] for e in tracker["events"] if e["event"] == "user"]
        assert users == ["I lost my card", "[CARD ****1111]", "4321", "this morning", "yes"]
        slots = [(e["name"], e["value"]) for e in tracker["events"] if e["event"] == "slot"]
        assert {("card_last4", "4321"), ("lost_when", "this morning")} <= set(slots), slots  # reset after the form

    pg, secret = replicas["pg"], (replicas["var"] / "secrets" / "postgres_password").read_text().strip()
    count = postgres.psql(pg, secret, f"SELECT COUNT(*) FROM events WHERE sender_id = '{SENDER}'")
    assert count.returncode == 0 and int(count.stdout) > 15, count.stdout + count.stderr
    rows = postgres.psql(pg, secret, "SELECT events::text FROM events", timeout_s=30)
    assert rows.returncode == 0 and "this morning" in rows.stdout, rows.stderr
    assert raw_personal_data(rows.stdout) == []
    for bot in (a, b):  # nothing went to the embedded default
        assert not (bot["settings"].rasa_dir / "tracker.sqlite3").exists()
        assert "Bearer" in (bot["settings"].rasa_dir / "project" / "endpoints.yml").read_text()

    redis_secret = (replicas["var"] / "secrets" / "redis_password").read_text().strip()
    stats = redis_info(replicas["redis"].port, redis_secret, "commandstats")
    assert "cmdstat_set:calls=" in stats, stats  # the lock store saved its locks there


def test_passwords_reach_rasa_only_through_its_environment(replicas: dict) -> None:
    secrets_dir = replicas["var"] / "secrets"
    passwords = [(secrets_dir / name).read_text().strip() for name in ("postgres_password", "redis_password")]
    for bot in replicas["bots"]:
        project = bot["settings"].rasa_dir / "project"
        files = [path for path in project.rglob("*") if path.is_file()]
        assert not [path for path in files for secret in passwords if secret in path.read_text(errors="replace")]
        log = bot["rasa_log"].read_text(errors="replace")
        assert not [secret for secret in passwords if secret in log]
        command = " ".join(open(f"/proc/{bot['rasa'].pid}/cmdline").read().split("\0"))
        assert not [secret for secret in passwords if secret in command]
        assert (bot["settings"].tracker_store, bot["settings"].lock_store) == ("postgresql", "redis")
