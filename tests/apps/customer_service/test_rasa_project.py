"""The Rasa project assembled from the knowledge base: intents, NLU examples, rules, endpoints (no Rasa run)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from apps.customer_service.__main__ import build_parser
from apps.customer_service.knowledge_base import load_knowledge_base
from apps.customer_service.rasa_project import assemble
from apps.customer_service.settings import APP_DIR, BotSettings


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
    assert endpoints["action_endpoint"]["url"] == "http://127.0.0.1:6055/webhook"
    assert endpoints["tracker_store"] == {"type": "SQL", "dialect": "sqlite",
                                          "db": str((tmp_path / "rasa" / "tracker.sqlite3").resolve())}
    credentials = yaml.safe_load((project / "credentials.yml").read_text())
    assert {"rest", "socketio"} <= set(credentials)
    config = yaml.safe_load((project / "config.yml").read_text())
    names = [step["name"] for step in config["pipeline"]]
    assert names[-2:] == ["components.core_intent.CoreIntentClassifier", "FallbackClassifier"]
    assert (project / "components/core_intent.py").is_file()


def test_help_documents_every_command(capsys: pytest.CaptureFixture) -> None:
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    out = capsys.readouterr().out
    for command in ("ingest", "ask", "tickets", "train", "actions", "rasa", "chat", "demo", "thresholds"):
        assert command in out
