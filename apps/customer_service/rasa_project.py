"""Assemble, train and run the Rasa project (Rasa 3.6 in its own Python 3.10 environment).

The hand-written project lives in ``apps/customer_service/rasa/``. The parts that follow from
the knowledge base are generated into the assembled copy (``<state>/rasa/project``), so that
the knowledge base stays the one source of truth:

* ``domain/banking77.yml``: one intent per answer document's ``intent:``;
* ``data/banking77.yml``: the documents' example questions as NLU examples of the coarse
  ``bank_question`` intent, and one rule per intent: ``intent -> action_answer_from_kb``.

``endpoints.yml`` gets the action server's URL and the tracker store: SQLite by default, its file kept
outside the project folder so that conversations survive re-assembly, re-training and restarts; or
PostgreSQL (``CS_TRACKER_STORE=postgresql``), plus a Redis lock store (``CS_LOCK_STORE=redis``), so
that several Rasa servers can share conversations (replicas, see ``infra/postgres.py`` and
``infra/redis_server.py``). ``config.yml`` gets the FallbackClassifier threshold of the settings
(tuned on dev for the configured intent model when ``make bench-bot`` has tuned one, see ``tuning.py``).

Secure by default (``server_command`` and ``environment``): Rasa listens on ``CS_RASA_HOST``
(loopback), its HTTP API needs the token (``tokens.rasa_token``; ``GET /`` and the channels stay
open), CORS allows only the web chat page's origin, and the channels mask personal data
(``rasa/channels/masked.py``). The tokens reach Rasa through its environment, never the project
files: ``endpoints.yml`` says ``${CS_ACTIONS_TOKEN}``, and ``start_rasa.py`` hands ``CS_RASA_TOKEN``
to ``rasa run`` inside the process, so it does not show in ``ps``. The data stores' passwords travel the
same way: ``${CS_POSTGRES_PASSWORD}`` and ``${CS_REDIS_PASSWORD}`` in ``endpoints.yml``, their values
(``POSTGRES_PASSWORD`` / ``REDIS_PASSWORD``, else the files infra generated) in Rasa's environment only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import yaml

from apps.customer_service.knowledge_base import KbDocument, load_knowledge_base
from apps.customer_service.settings import APP_DIR, REPO_ROOT, BotSettings
from apps.customer_service.tokens import actions_token, rasa_token
from infra.datastores import DataStoreError, password
from infra.rasa import rasa_environment, rasa_executable

TEMPLATE = APP_DIR / "rasa"
MODEL_NAME = "bot"
FORM_INTENTS = {"lost_or_stolen_card"}  # intents handled by a form rule in data/rules.yml, not by retrieval
UP_AND_RUNNING = "Rasa server is up and running"
STORE_DB = "rasa"  # database and role infra/postgres.py creates
# Rasa's environment variables with the data stores' passwords, and where infra keeps generated ones
STORE_SECRETS = {"CS_POSTGRES_PASSWORD": ("POSTGRES_PASSWORD", "postgres_password"),
                 "CS_REDIS_PASSWORD": ("REDIS_PASSWORD", "redis_password")}


class StoreConfigError(RuntimeError):
    """A configured data store that Rasa cannot be given (no password); the message says what to do."""


def generated_files(documents: list[KbDocument]) -> dict[str, dict]:
    """The knowledge-base-derived domain and data, as YAML-ready dicts keyed by relative path."""
    intents = sorted({doc.intent for doc in documents if doc.intent})
    examples = sorted({q for doc in documents for q in doc.questions})
    rules = [{"rule": f"answer {intent}", "steps": [{"intent": intent}, {"action": "action_answer_from_kb"}]}
             for intent in intents if intent not in FORM_INTENTS]
    return {
        "domain/banking77.yml": {"version": "3.1", "intents": intents},
        "data/banking77.yml": {
            "version": "3.1",
            "nlu": [{"intent": "bank_question", "examples": "".join(f"- {q}\n" for q in examples)}],
            "rules": rules,
        },
    }


def assemble(settings: BotSettings, documents: list[KbDocument] | None = None, config: Path | None = None) -> Path:
    """Write the runnable project to ``<state>/rasa/project`` and return that folder."""
    documents = documents if documents is not None else load_knowledge_base(settings.kb_dir)
    project = settings.rasa_dir / "project"
    if project.exists():
        shutil.rmtree(project)
    shutil.copytree(TEMPLATE, project, ignore=shutil.ignore_patterns("__pycache__"))
    if config is not None:
        shutil.copyfile(config, project / "config.yml")
    write_config(project / "config.yml", settings)
    for relative, content in generated_files(documents).items():
        (project / relative).write_text("# generated from the knowledge base; do not edit\n"
                                        + yaml.safe_dump(content, sort_keys=False, allow_unicode=True),
                                        encoding="utf-8")
    endpoints = (project / "endpoints.yml").read_text(encoding="utf-8")
    tracker_db = (settings.rasa_dir / "tracker.sqlite3").resolve()
    endpoints = endpoints.replace("__ACTIONS_URL__", settings.actions_url).replace("__TRACKER_DB__", str(tracker_db))
    if settings.tracker_store != "sqlite" or settings.lock_store != "memory":
        endpoints = _with_stores(yaml.safe_load(endpoints), settings)
    (project / "endpoints.yml").write_text(endpoints, encoding="utf-8")
    return project


def _with_stores(endpoints: dict, settings: BotSettings) -> str:
    """endpoints.yml with the PostgreSQL tracker store and / or the Redis lock store of ``settings``."""
    if settings.tracker_store == "postgresql":
        endpoints["tracker_store"] = {"type": "SQL", "dialect": "postgresql", "url": settings.postgres_host,
                                      "port": settings.postgres_port, "db": STORE_DB, "username": STORE_DB,
                                      "password": "${CS_POSTGRES_PASSWORD}"}
    if settings.lock_store == "redis":
        endpoints["lock_store"] = {"type": "redis", "url": settings.redis_host, "port": settings.redis_port,
                                   "password": "${CS_REDIS_PASSWORD}", "db": settings.redis_db}
    text = yaml.safe_dump(endpoints, sort_keys=False)  # ${...} stays a plain scalar, the only kind Rasa expands
    return ("# assembled by apps/customer_service/rasa_project.py (CS_TRACKER_STORE, CS_LOCK_STORE); Rasa reads\n"
            "# ${...} from its environment, so no token or password is written here\n" + text)


def store_passwords(settings: BotSettings) -> dict[str, str]:
    """Rasa's environment variables with the configured data stores' passwords (none for SQLite / memory):
    ``POSTGRES_PASSWORD`` / ``REDIS_PASSWORD``, else the files infra generated in ``$TEXTML_VAR_DIR/secrets/``."""
    wanted = {"CS_POSTGRES_PASSWORD": (settings.tracker_store == "postgresql", settings.postgres_password),
              "CS_REDIS_PASSWORD": (settings.lock_store == "redis", settings.redis_password)}
    passwords = {}
    for variable, (used, given) in wanted.items():
        if not used:
            continue
        source, secret = STORE_SECRETS[variable]
        try:
            value = given or password({}, source, settings.var_dir, secret, create=False)
        except DataStoreError as error:
            raise StoreConfigError(str(error)) from None
        if not value:
            server = "infra.postgres" if secret.startswith("postgres") else "infra.redis_server"
            raise StoreConfigError(f"no password for the {secret.split('_')[0]} store: set {source}, or start the "
                                   f"server first (`make up` or `python -m {server} init` generates "
                                   f"{settings.var_dir / 'secrets' / secret})")
        passwords[variable] = value
    return passwords


def write_config(path: Path, settings: BotSettings) -> None:
    """Set the FallbackClassifier threshold in the Rasa config at ``path`` to ``settings.intent_fallback``."""
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    steps = [step for step in config.get("pipeline") or [] if step.get("name") == "FallbackClassifier"]
    if not steps:
        return  # e.g. a plain DIET config: nothing falls back
    for step in steps:
        step["threshold"] = float(settings.intent_fallback)
    source = settings.threshold_sources.get("intent_fallback", "default")
    path.write_text(f"# assembled by apps/customer_service/rasa_project.py; FallbackClassifier threshold "
                    f"{settings.intent_fallback}: {source}\n" + yaml.safe_dump(config, sort_keys=False),
                    encoding="utf-8")


def needs_training(settings: BotSettings, project: Path) -> bool:
    """No trained model yet, or it was trained with another config (e.g. a newly tuned fallback threshold)."""
    stamp = trained_config(settings)
    return (not model_path(settings).is_file() or not stamp.is_file()
            or stamp.read_text(encoding="utf-8") != (project / "config.yml").read_text(encoding="utf-8"))


def trained_config(settings: BotSettings) -> Path:
    """A copy of the config the current model was trained with."""
    return settings.rasa_dir / "models" / f"{MODEL_NAME}.config.yml"


def environment(settings: BotSettings, project: Path, stores: bool = True) -> dict[str, str]:
    """Rasa's subprocess environment: its own venv; the project folder (custom component, channels,
    launcher) and the repository (``apps.customer_service.masking``) importable; the tokens and the web
    origins (creates missing token files, see ``tokens.py``); with ``stores``, the data stores' passwords
    (:func:`store_passwords`; ``rasa train`` needs none)."""
    env = rasa_environment()
    env["PYTHONPATH"] = os.pathsep.join([str(project), str(REPO_ROOT)])
    env["CS_INTENTS_URL"] = f"{settings.actions_url}/intents"
    env["CS_ACTIONS_TOKEN"] = actions_token(settings)
    env["CS_RASA_TOKEN"] = rasa_token(settings)
    env["CS_WEB_ORIGINS"] = ",".join(settings.cors_origins)
    for variable in STORE_SECRETS:
        env.pop(variable, None)
    if stores:
        env.update(store_passwords(settings))
    env.pop("VIRTUAL_ENV", None)
    return env


def model_path(settings: BotSettings) -> Path:
    return settings.rasa_dir / "models" / f"{MODEL_NAME}.tar.gz"


def train(settings: BotSettings, config: Path | None = None, timeout: float = 1800) -> Path:
    """Assemble and ``rasa train`` (Rasa skips the work when nothing changed); returns the model file."""
    project = assemble(settings, config=config)
    models = settings.rasa_dir / "models"
    command = [str(rasa_executable()), "train", "--domain", "domain", "--data", "data", "--config", "config.yml",
               "--out", str(models), "--fixed-model-name", MODEL_NAME]
    result = subprocess.run(command, cwd=project, env=environment(settings, project, stores=False),
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0 or not model_path(settings).is_file():
        tail = (result.stdout[-3000:] + result.stderr[-3000:]).strip()
        raise RuntimeError(f"`rasa train` failed with exit code {result.returncode} in {project}:\n{tail}")
    shutil.copyfile(project / "config.yml", trained_config(settings))
    return model_path(settings)


def server_command(settings: BotSettings) -> list[str]:
    """``rasa run`` on ``CS_RASA_HOST`` with the API (token from the environment, see ``start_rasa.py``),
    CORS for the web page's origin only, the masking REST + socket.io channels, the trained model.

    Runs from the assembled project folder with :func:`environment`.
    """
    python = rasa_executable().with_name("python")
    return [str(python), "-m", "start_rasa", "run", "--enable-api", "--interface", settings.rasa_host,
            "--port", str(settings.rasa_port), "--cors", *settings.cors_origins, "--model", str(model_path(settings)),
            "--endpoints", "endpoints.yml", "--credentials", "credentials.yml"]
