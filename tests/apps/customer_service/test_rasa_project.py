"""The Rasa project assembled from the knowledge base: intents, NLU examples, rules, endpoints (no Rasa run)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from apps.customer_service.__main__ import build_parser
from apps.customer_service.knowledge_base import load_knowledge_base
from apps.customer_service.rasa_project import assemble, environment, server_command
from apps.customer_service.settings import APP_DIR, REPO_ROOT, BotSettings
from apps.customer_service.tokens import actions_token, rasa_token


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
