"""``python -m apps.customer_service demo``: build what is missing, start both servers, run a scripted chat.

Shows an answer with its citation, the lost-card form (with a rejected full card number), a
question that is not for a bank's bot (declined, when the scope model is there: it is trained here
from the shared datasets if missing), and a hand-off with its ticket; then stops the servers it
started (servers already running, e.g. from ``make up``, are used as they are and left running).
"""

from __future__ import annotations

import os
import subprocess
import uuid

from apps.customer_service.chat import send
from apps.customer_service.launch import actions_ready, rasa_ready, start_service, stop_service, wait_until
from apps.customer_service.rasa_project import assemble, needs_training, train
from apps.customer_service.scope import CARD_FILE
from apps.customer_service.scope_training import ScopeDataError, train_scope
from apps.customer_service.settings import BotSettings
from apps.customer_service.tokens import rasa_token

SCRIPT = (
    "hello",
    "I ordered my card two weeks ago and it still hasn't arrived",
    "I lost my card",
    "4111 1111 1111 1111",
    "4321",
    "this morning",
    "yes",
    "how many prime numbers are there between 0 and 100",
    "I want to talk to a person",
)


def run_demo(settings: BotSettings, print_fn=print) -> None:
    from apps.customer_service.ingest import ingest, stale_reason

    reason = stale_reason(settings.kb_dir, settings.index_dir, settings.embedder)
    if reason:
        print_fn(f"ingesting the knowledge base with {settings.embedder} ({reason}) ...")
        ingest(settings.kb_dir, settings.index_dir, settings.embedder)
    scope = settings.scope_dir
    if scope is not None and not (scope / CARD_FILE).is_file():
        try:
            train_scope(settings, log=print_fn)
        except ScopeDataError as error:
            print_fn(f"out-of-scope detection stays off: {error}")
    if needs_training(settings, assemble(settings)):
        print_fn("training the Rasa model (about a minute) ...")
        train(settings)
    env = {**os.environ, "CS_STATE_DIR": str(settings.state_dir), "CS_ACTIONS_PORT": str(settings.actions_port),
           "CS_RASA_PORT": str(settings.rasa_port)}
    logs = settings.state_dir / "logs"
    token = rasa_token(settings)  # the servers started here read the same one (same state folder)
    started: list[subprocess.Popen] = []
    try:
        if not actions_ready(settings.actions_url):
            started.append(start_service("actions", logs / "actions.log", env))
            wait_until(lambda: actions_ready(settings.actions_url), started[-1], logs / "actions.log",
                       "action server")
        if not rasa_ready(settings.rasa_url, logs / "none.log", token):
            started.append(start_service("rasa", logs / "rasa.log", env))
            wait_until(lambda: rasa_ready(settings.rasa_url, logs / "rasa.log", token), started[-1],
                       logs / "rasa.log", "Rasa server")
        sender = f"demo-{uuid.uuid4().hex[:6]}"
        for line in SCRIPT:
            print_fn(f"customer> {line}")
            for message in send(settings.rasa_url, sender, line):
                if message.get("text"):
                    print_fn(f"     bot> {message['text']}")
        print_fn(f"(web chat: {settings.actions_url}/ ; tickets: python -m apps.customer_service tickets)")
    finally:
        for process in reversed(started):
            stop_service(process)
