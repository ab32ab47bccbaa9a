"""CoreIntentClassifier's routing inside Rasa's own Python: small talk, overrides, empty text, service down.

The component runs in .venv-rasa (Rasa 3.6); a small standard-library HTTP server stands in for the
action server's ``/intents`` with fixed rankings, so the test checks the routing rules, not a model.
Like the action server, it answers 401 without the token (``CS_ACTIONS_TOKEN``), so "up" also shows
that the component sends it.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from apps.customer_service.rasa_project import TEMPLATE
from infra.rasa import rasa_environment, rasa_executable

pytestmark = pytest.mark.rasa

SCRIPT = r"""
import json, os, sys, threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from components.core_intent import CoreIntentClassifier
from rasa.shared.nlu.training_data.message import Message

RANKINGS = {"goodbye": 0.857, "Can you tell me the foreign exchange rate?": 0.99, "hello": 0.2,
            "what is a top-up?": 0.6}

class Intents(BaseHTTPRequestHandler):
    def do_POST(self):
        if self.headers.get("Authorization") != "Bearer " + os.environ["CS_ACTIONS_TOKEN"]:
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        texts = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["texts"]
        body = {"rankings": [[{"name": "exchange_rate", "confidence": RANKINGS[t]},
                              {"name": "card_arrival", "confidence": 0.001}] for t in texts]}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

server = HTTPServer(("127.0.0.1", 0), Intents)
threading.Thread(target=server.serve_forever, daemon=True).start()
up = f"http://127.0.0.1:{server.server_port}/intents"
config = {"keep_intents": ["goodbye", "out_of_scope", "greet"], "keep_threshold": 0.5, "override_threshold": 0.95}
cases = [("goodbye", "goodbye", 0.9), ("Can you tell me the foreign exchange rate?", "out_of_scope", 0.67),
         ("hello", "greet", 0.4), ("what is a top-up?", "bank_question", 0.8), ("   ", "greet", 0.3)]
results = {}
for url in (up, "http://127.0.0.1:9/intents"):
    component = CoreIntentClassifier({**config, "url": url, "timeout": 2.0})
    messages = [Message(data={"text": text, "intent": {"name": intent, "confidence": confidence}})
                for text, intent, confidence in cases]
    component.process(messages)
    results["up" if url == up else "down"] = [m.get("intent")["name"] for m in messages]
print(json.dumps(results))
"""


def test_small_talk_overrides_empty_text_and_service_down() -> None:
    env = rasa_environment()
    env.pop("CS_INTENTS_URL", None)
    env["CS_ACTIONS_TOKEN"] = "test-token-0123456789"
    env["PYTHONPATH"] = str(TEMPLATE)
    python = rasa_executable().with_name("python")
    result = subprocess.run([str(python), "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    routed = json.loads(result.stdout.strip().splitlines()[-1])
    # confident small talk stays unless core is surer of a banking intent; "hello" at 0.4 is not
    # confident small talk, so core's intent applies; blank text gets its own intent
    assert routed["up"] == ["goodbye", "exchange_rate", "exchange_rate", "exchange_rate", "empty_message"]
    # the intent service is down: confident small talk still works, everything else says so
    assert routed["down"] == ["goodbye", "out_of_scope", "service_unavailable", "service_unavailable",
                              "empty_message"]


SCOPE_SCRIPT = r"""
import json, os, threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from components.core_intent import CoreIntentClassifier
from rasa.shared.nlu.training_data.message import Message

ANSWERS = {  # text -> (best intent, confidence, scope decision or None for "no scope model")
    "what's the weather": ("exchange_rate", 0.3, "out"),
    "card thing maybe": ("card_arrival", 0.4, "unsure"),
    "find my wallet": ("lost_or_stolen_card", 0.6, "in"),
    "I lost my card": ("lost_or_stolen_card", 0.97, "in"),
    "top up?": ("top_up", 0.9, "in"),
    "goodbye": ("terminate_account", 0.857, "in"),
    "yes and who won the cup": ("top_up", 0.2, "out"),
    "talk to a human please": ("top_up", 0.2, "out"),
}
RASA_INTENTS = {"goodbye": "goodbye", "yes and who won the cup": "affirm", "talk to a human please": "human_handoff"}

class Intents(BaseHTTPRequestHandler):
    def do_POST(self):
        texts = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["texts"]
        body = {"rankings": [[{"name": ANSWERS[t][0], "confidence": ANSWERS[t][1]}] for t in texts],
                "scopes": [{"decision": ANSWERS[t][2], "p_out": 0.9 if ANSWERS[t][2] == "out" else 0.3}
                           for t in texts] if os.environ.get("WITH_SCOPE") else None}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

server = HTTPServer(("127.0.0.1", 0), Intents)
threading.Thread(target=server.serve_forever, daemon=True).start()
config = {"keep_intents": ["goodbye", "affirm", "human_handoff"], "keep_threshold": 0.5,
          "form_intents": ["lost_or_stolen_card"], "form_threshold": 0.8, "url": f"http://127.0.0.1:{server.server_port}/intents"}
messages = [Message(data={"text": text, "intent": {"name": RASA_INTENTS.get(text, "bank_question"),
                                                   "confidence": 0.9}}) for text in ANSWERS]
CoreIntentClassifier(config).process(messages)
print(json.dumps([[m.get("intent")["name"], [r["name"] for r in m.get("intent_ranking") or []][:2],
                   (m.get("scope") or {}).get("decision")] for m in messages]))
"""


@pytest.mark.parametrize("with_scope", [True, False])
def test_scope_decisions_and_forms_only_on_confident_intents(with_scope: bool) -> None:
    env = rasa_environment()
    env["PYTHONPATH"] = str(TEMPLATE)
    env.pop("WITH_SCOPE", None)
    if with_scope:
        env["WITH_SCOPE"] = "1"
    python = rasa_executable().with_name("python")
    result = subprocess.run([str(python), "-c", SCOPE_SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    routed = json.loads(result.stdout.strip().splitlines()[-1])
    names = [intent for intent, _, _ in routed]
    # a form intent below form_threshold goes to nlu_fallback (the answering action), with or without scopes
    assert names[2:5] == ["nlu_fallback", "lost_or_stolen_card", "top_up"]
    assert routed[2][1] == ["nlu_fallback", "lost_or_stolen_card"]  # the ranking stays for the topics
    assert names[5] == "goodbye" and names[7] == "human_handoff"  # confident small talk; a person is always heard
    if with_scope:
        assert names[6] == "out_of_scope"  # "out" beats small talk that Rasa misread
        assert routed[0] == ["out_of_scope", ["out_of_scope", "exchange_rate"], "out"]
        assert routed[1] == ["unsure_scope", ["unsure_scope", "card_arrival"], "unsure"]
        assert routed[3][2] == "in"
    else:  # no scope model: core's intents as before
        assert names[:2] == ["exchange_rate", "card_arrival"] and all(scope is None for _, _, scope in routed)
        assert names[6] == "affirm"
