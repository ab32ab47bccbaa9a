"""The Rasa project assembled from the knowledge base: intents, NLU examples, rules, endpoints (no Rasa run)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from apps.customer_service.__main__ import build_parser
from apps.customer_service.knowledge_base import load_knowledge_base
from apps.customer_service.rasa_project import StoreConfigError, assemble, environment, server_command
from apps.customer_service.settings import APP_DIR, REPO_ROOT, BotSettings
from apps.customer_service.tokens import actions_token, rasa_token
from infra.rasa import rasa_executable


def test_assembled_project_covers_every_intent(tmp_path: Path) -> None:
    settings = BotSettings(state_dir=tmp_path, actions_port=6055)
    project = assemble(settings)
    documents = load_knowledge_base(APP_DIR / "knowledge")
    domain = yaml.safe_load((project / "domain/banking77.yml").read_text())
    assert len(domain["intents"]) == 77 and "reverted_card_payment?" in domain["intents"]
    data = yaml.safe_load((project / "data/banking77.yml").read_text())
    examples = [line[2:] for line in data["nlu"][0]["examples"].splitlines()]
    assert data["nlu"][0]["intent"] == "bank_question"
    assert len(examples) == len({q for doc in documents for q in doc.questions})
    ruled = {rule["steps"][0]["intent"] for rule in data["rules"]}
    assert ruled == set(domain["intents"]) - {"lost_or_stolen_card"}  # that one starts the form
    assert all(rule["steps"][1] == {"action": "action_answer_from_kb"} for rule in data["rules"])
    endpoints = yaml.safe_load((project / "endpoints.yml").read_text())
    assert endpoints["action_endpoint"] == {"url": "http://127.0.0.1:6055/webhook",
                                            "headers": {"Authorization": "Bearer ${CS_ACTIONS_TOKEN}"}}
    assert endpoints["tracker_store"] == {"type": "SQL", "dialect": "sqlite",
                                          "db": str((tmp_path / "rasa" / "tracker.sqlite3").resolve())}
    credentials = yaml.safe_load((project / "credentials.yml").read_text())
    assert set(credentials) == {"channels.masked.MaskedRestInput", "channels.masked.MaskedSocketIOInput"}
    assert (project / "channels/masked.py").is_file() and (project / "start_rasa.py").is_file()
    config = yaml.safe_load((project / "config.yml").read_text())
    names = [step["name"] for step in config["pipeline"]]
    assert names[-2:] == ["components.core_intent.CoreIntentClassifier", "FallbackClassifier"]
    assert (project / "components/core_intent.py").is_file()


def test_server_runs_on_loopback_with_tokens_from_the_environment(tmp_path: Path) -> None:
    """``rasa run`` on 127.0.0.1, CORS for the web page only; the tokens travel in the environment, not in
    the command line (``ps``) or the project's files."""
    settings = BotSettings(state_dir=tmp_path, actions_port=6055, rasa_port=6005)
    project = assemble(settings)
    command = server_command(settings)
    assert command[1:5] == ["-m", "start_rasa", "run", "--enable-api"]
    assert command[command.index("--interface") + 1] == "127.0.0.1"
    assert command[command.index("--port") + 1] == "6005"
    cors = command[command.index("--cors") + 1:command.index("--model")]
    assert cors == ["http://127.0.0.1:6055", "http://localhost:6055"] and "*" not in command
    env = environment(settings, project)
    assert env["CS_RASA_TOKEN"] == rasa_token(settings) and env["CS_ACTIONS_TOKEN"] == actions_token(settings)
    assert env["PYTHONPATH"].split(":") == [str(project), str(REPO_ROOT)]
    assert env["CS_WEB_ORIGINS"] == "http://127.0.0.1:6055,http://localhost:6055"
    for secret in (env["CS_RASA_TOKEN"], env["CS_ACTIONS_TOKEN"]):
        assert secret not in " ".join(command)
        files = [path for path in project.rglob("*") if path.is_file()]
        assert not [path for path in files if secret in path.read_text(errors="replace")]


def test_help_documents_every_command(capsys: pytest.CaptureFixture) -> None:
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    out = capsys.readouterr().out
    for command in ("ingest", "ask", "tickets", "train", "actions", "rasa", "chat", "demo", "thresholds"):
        assert command in out


def _store_settings(tmp_path: Path, **overrides) -> BotSettings:
    values = {"state_dir": tmp_path / "state", "var_dir": tmp_path / "var", "actions_port": 6055,
              "tracker_store": "postgresql", "lock_store": "redis", "postgres_port": 15432, "redis_port": 16379}
    return BotSettings(**{**values, **overrides})


def _write_secret(var: Path, name: str, value: str) -> None:
    (var / "secrets").mkdir(parents=True, exist_ok=True)
    (var / "secrets" / name).write_text(value + "\n")


def test_postgresql_tracker_store_and_redis_lock_store_with_passwords_from_the_environment(tmp_path: Path) -> None:
    settings = _store_settings(tmp_path)
    _write_secret(settings.var_dir, "postgres_password", "pg-generated-password")
    _write_secret(settings.var_dir, "redis_password", "redis-generated-password")
    project = assemble(settings)
    text = (project / "endpoints.yml").read_text()
    endpoints = yaml.safe_load(text)
    assert endpoints["tracker_store"] == {"type": "SQL", "dialect": "postgresql", "url": "127.0.0.1", "port": 15432,
                                          "db": "rasa", "username": "rasa", "password": "${CS_POSTGRES_PASSWORD}"}
    assert endpoints["lock_store"] == {"type": "redis", "url": "127.0.0.1", "port": 16379,
                                       "password": "${CS_REDIS_PASSWORD}", "db": 1}
    assert endpoints["action_endpoint"]["headers"] == {"Authorization": "Bearer ${CS_ACTIONS_TOKEN}"}
    # Rasa expands ${...} only in plain scalars: none of them may be quoted
    for line in ("password: ${CS_POSTGRES_PASSWORD}", "password: ${CS_REDIS_PASSWORD}",
                 "Authorization: Bearer ${CS_ACTIONS_TOKEN}"):
        assert line in text
    env = environment(settings, project)
    assert (env["CS_POSTGRES_PASSWORD"], env["CS_REDIS_PASSWORD"]) == ("pg-generated-password",
                                                                      "redis-generated-password")
    files = [path for path in project.rglob("*") if path.is_file()]
    assert not [path for path in files if "generated-password" in path.read_text(errors="replace")]
    assert "generated-password" not in " ".join(server_command(settings))
    given = environment(replace(settings, postgres_password="pg-given-password"), project)
    assert given["CS_POSTGRES_PASSWORD"] == "pg-given-password"  # POSTGRES_PASSWORD wins over the file
    training = environment(settings, project, stores=False)
    assert "CS_POSTGRES_PASSWORD" not in training and "CS_REDIS_PASSWORD" not in training


def test_the_sqlite_default_gets_no_store_passwords(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CS_POSTGRES_PASSWORD", "leaked-from-the-caller")
    settings = BotSettings(state_dir=tmp_path)
    project = assemble(settings)
    assert "lock_store" not in yaml.safe_load((project / "endpoints.yml").read_text())
    assert "CS_POSTGRES_PASSWORD" not in environment(settings, project)


def test_a_configured_store_without_a_password_says_how_to_get_one(tmp_path: Path) -> None:
    settings = _store_settings(tmp_path, lock_store="memory")
    project = assemble(settings)
    with pytest.raises(StoreConfigError, match=r"no password for the postgres store: set POSTGRES_PASSWORD, or start "
                                               r"the server first .*var/secrets/postgres_password"):
        environment(settings, project)
    assert "lock_store" not in yaml.safe_load((project / "endpoints.yml").read_text())


@pytest.mark.rasa
@pytest.mark.slow
def test_rasa_reads_the_stores_and_expands_the_passwords(tmp_path: Path) -> None:
    """Rasa 3.6's own endpoint reader: the kwargs its SQLTrackerStore and RedisLockStore get."""
    settings = _store_settings(tmp_path, postgres_password="pg-given-password", redis_password="redis-given-password")
    project = assemble(settings)
    code = ("import json; from rasa.core.utils import read_endpoints_from_path as r; e = r('endpoints.yml'); "
            "print(json.dumps([e.tracker_store.type, e.tracker_store.url, e.tracker_store.kwargs, "
            "e.lock_store.type, e.lock_store.url, e.lock_store.kwargs]))")
    result = subprocess.run([str(rasa_executable().with_name("python")), "-c", code], cwd=project,
                            env=environment(settings, project), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    tracker_type, tracker_url, tracker, lock_type, lock_url, lock = json.loads(result.stdout.strip().splitlines()[-1])
    assert (tracker_type, tracker_url, lock_type, lock_url) == ("SQL", "127.0.0.1", "redis", "127.0.0.1")
    assert tracker == {"dialect": "postgresql", "port": 15432, "db": "rasa", "username": "rasa",
                       "password": "pg-given-password"}
    assert lock == {"port": 16379, "password": "redis-given-password", "db": 1}


@pytest.mark.parametrize(("settings", "message"), [
    ({"CS_TRACKER_STORE": "postgresql"}, "error: no password for the postgres store: set POSTGRES_PASSWORD"),
    ({"CS_LOCK_STORE": "redis"}, "error: no password for the redis store: set REDIS_PASSWORD"),
    ({"CS_TRACKER_STORE": "mongodb"}, "error: CS_TRACKER_STORE='mongodb' is not a supported store; expected one of: "
                                      "sqlite, postgresql"),
])
def test_rasa_command_names_a_bad_store_setting_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture, settings: dict,
                                                                 message: str) -> None:
    from apps.customer_service.__main__ import main

    for name in ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "CS_TRACKER_STORE", "CS_LOCK_STORE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {"TEXTML_VAR_DIR": str(tmp_path / "var"), "CS_STATE_DIR": str(tmp_path / "state"),
                        "CS_EMBEDDER": "all-MiniLM-L6-v2", "CS_RERANKER": "none", "CS_INTENT_MODEL": "retrieval",
                        **settings}.items():
        monkeypatch.setenv(name, value)
    assert main(["rasa"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "state" / "rasa" / "models").exists()  # nothing was trained
