"""The bot's settings: one frozen object, read from the environment here and nowhere else.

| variable | default | meaning |
|---|---|---|
| ``CS_KB_DIR`` | ``apps/customer_service/knowledge`` | the Markdown knowledge base |
| ``CS_STATE_DIR`` | ``$TEXTML_VAR_DIR/customer_service`` (``var/customer_service``) | index, tickets, event log, Rasa |
| ``CS_EMBEDDER`` | registry ``kb-embedder`` (production) if saved, else ``all-MiniLM-L6-v2`` | retrieval embedder |
| ``CS_RERANKER`` | registry ``kb-reranker`` (production) if saved, else none; ``none`` turns it off | re-ranker |
| ``CS_INTENT_MODEL`` | registry ``intent-banking77`` (production) if saved, else ``retrieval`` | intent model |
| ``CS_ACTIONS_PORT`` / ``CS_RASA_PORT`` | ``5055`` / ``5005`` | action server / Rasa server ports |
| ``CS_ACTIONS_HOST`` / ``CS_RASA_HOST`` | ``127.0.0.1`` / ``127.0.0.1`` | interfaces they listen on (loopback) |
| ``CS_RASA_TOKEN`` | generated: ``<state>/secrets/rasa_token`` | Rasa HTTP API token (``?token=``) |
| ``CS_ACTIONS_TOKEN`` | generated: ``<state>/secrets/actions_token`` | token Rasa sends the action server |
| ``CS_STAFF_TOKEN`` | generated: ``<state>/secrets/staff_token`` | agents' token for the action server's ``/tickets`` |
| ``CS_WEB_ORIGINS`` | ``http://127.0.0.1:<actions port>``, ``http://localhost:...`` | CORS origins, comma-separated |
| ``CS_TUNED_FILE`` | ``$TEXTML_VAR_DIR/customer_service/tuned.json`` | thresholds tuned on dev (``tuning.py``) |
| ``CS_ANSWER_THRESHOLD`` / ``CS_CLARIFY_THRESHOLD`` | tuned, else ``RetrievalConfig`` | thresholds on the final score |
| ``CS_FALLBACK_THRESHOLD`` | tuned, else ``0.35`` | intent confidence below which Rasa predicts ``nlu_fallback`` |
| ``CS_SCOPE_MODEL`` | ``<state>/scope`` (made by ``... scope train``); ``none``: off | in / out of scope model |
| ``TEXTML_DATASETS_DIR`` | ``../shared/datasets`` beside the repository | data ``scope train`` reads |
| ``CS_INFERENCE_THREADS`` | ``1`` | torch threads in the action server (one query at a time: 1 is fastest) |
| ``CS_TRACKER_STORE`` | ``sqlite`` | tracker store: ``sqlite`` (embedded, ``<state>/rasa/``) or ``postgresql`` |
| ``CS_LOCK_STORE`` | ``memory`` | lock store: ``memory`` (one Rasa server) or ``redis`` (replicas share locks) |
| ``POSTGRES_HOST`` / ``POSTGRES_PORT`` | ``127.0.0.1`` / ``5432`` | PostgreSQL server (database and role ``rasa``) |
| ``POSTGRES_PASSWORD`` | ``$TEXTML_VAR_DIR/secrets/postgres_password`` | the ``rasa`` role's password |
| ``REDIS_HOST`` / ``REDIS_PORT`` | ``127.0.0.1`` / ``6379`` | Redis server (lock store in database ``1``) |
| ``REDIS_PASSWORD`` | ``$TEXTML_VAR_DIR/secrets/redis_password`` | Redis ``requirepass`` password |

Both servers listen on loopback by default: put a proxy in front to expose them. Rasa's HTTP API
(``/status``, ``/conversations/...``, ``/model/...``) needs its token; its channels (REST,
socket.io) and ``GET /`` do not. The action server needs its token (``Authorization: Bearer``)
on everything but ``GET /`` (the web chat page), its socket.io client and ``GET /health``; its ``/tickets``
endpoints take the staff token instead (agents are not Rasa). Tokens given in the
environment must be at least 16 URL-safe characters (``A-Z a-z 0-9 - _ . ~``); ``tokens.py``
generates the others into files of mode 0600 (``cat var/customer_service/secrets/rasa_token``).
Error messages never show a token. ``CS_WEB_ORIGINS`` defaults to the origins of the web chat
page, which the action server serves; ``*`` allows any.

Replicas: with ``CS_TRACKER_STORE=postgresql`` and ``CS_LOCK_STORE=redis`` several Rasa servers share
conversations and their locks (``infra/postgres.py`` and ``infra/redis_server.py`` run the servers; the
``POSTGRES_*`` / ``REDIS_*`` names and defaults are theirs). The passwords reach Rasa only through its
environment (``rasa_project.environment``); the assembled ``endpoints.yml`` says ``${CS_POSTGRES_PASSWORD}``
and ``${CS_REDIS_PASSWORD}``. A password that is neither set nor in its file is reported when Rasa starts.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from apps.customer_service.retrieval import RetrievalConfig, Thresholds
from apps.customer_service.tuning import apply_tuned, tuned_file
from core.registry import Registry

APP_DIR = Path(__file__).resolve().parent
REPO_ROOT = APP_DIR.parents[1]
DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
EMBEDDER_NAME, RERANKER_NAME, INTENT_NAME = "kb-embedder", "kb-reranker", "intent-banking77"


@dataclass(frozen=True)
class BotSettings:
    kb_dir: Path = APP_DIR / "knowledge"
    state_dir: Path = REPO_ROOT / "var" / "customer_service"
    embedder: str = DEFAULT_EMBEDDER
    reranker: str | None = None
    intent_model: str = "retrieval"  # "retrieval" (nearest KB passage's intent) or a classifier artifact folder
    actions_host: str = "127.0.0.1"
    actions_port: int = 5055
    rasa_host: str = "127.0.0.1"
    rasa_port: int = 5005
    web_origins: tuple[str, ...] = ()  # empty: the web chat page's own origin (see cors_origins)
    # from CS_RASA_TOKEN / CS_ACTIONS_TOKEN; None: generated into secrets_dir (tokens.py). Never in repr.
    rasa_token: str | None = field(default=None, repr=False)
    actions_token: str | None = field(default=None, repr=False)
    staff_token: str | None = field(default=None, repr=False)  # CS_STAFF_TOKEN: agents' /tickets endpoints
    var_dir: Path = REPO_ROOT / "var"  # TEXTML_VAR_DIR: where the data stores keep their generated passwords
    tracker_store: str = "sqlite"  # or "postgresql"
    lock_store: str = "memory"  # or "redis"
    postgres_host: str = "127.0.0.1"
    postgres_port: int = 5432
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    redis_db: int = 1  # Rasa's default lock-store database
    # from POSTGRES_PASSWORD / REDIS_PASSWORD; None: the file infra wrote ($TEXTML_VAR_DIR/secrets/). Never in repr.
    postgres_password: str | None = field(default=None, repr=False)
    redis_password: str | None = field(default=None, repr=False)
    scope_model: str = ""  # the scope model folder (scope.py); "": <state>/scope; "none": out-of-scope detection off
    datasets_dir: Path = REPO_ROOT.parent / "shared" / "datasets"
    inference_threads: int = 1  # one short text per request: extra threads only add OpenMP spin-waiting
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    # FallbackClassifier threshold written into the assembled Rasa config. The default suits the
    # retrieval intents' cosine scale; a classifier gets the value tuned on dev for it (tuning.py).
    intent_fallback: float = 0.35
    # where each threshold came from ("default", "tuned on dev (...)", "CS_... environment variable")
    threshold_sources: dict = field(default_factory=lambda: {"intent_fallback": "default", "retrieval": "default"})

    @property
    def index_dir(self) -> Path:
        return self.state_dir / "kb_index"

    @property
    def tickets_db(self) -> Path:
        return self.state_dir / "tickets.sqlite3"

    @property
    def events_db(self) -> Path:
        """The decision event log (``events.py``): masked texts, read by ``python -m apps.customer_service report``."""
        return self.state_dir / "events.sqlite3"

    @property
    def scope_dir(self) -> Path | None:
        """The scope model folder (``scope.py``), None when ``CS_SCOPE_MODEL=none`` turned the decision off."""
        if self.scope_model.lower() == "none":
            return None
        return Path(self.scope_model) if self.scope_model else self.state_dir / "scope"

    @property
    def rasa_dir(self) -> Path:
        """Where the Rasa project is assembled, trained and run (models/, tracker store)."""
        return self.state_dir / "rasa"

    @property
    def secrets_dir(self) -> Path:
        """Generated tokens (mode 0700 folder, 0600 files)."""
        return self.state_dir / "secrets"

    @property
    def rasa_token_file(self) -> Path:
        return self.secrets_dir / "rasa_token"

    @property
    def actions_token_file(self) -> Path:
        return self.secrets_dir / "actions_token"

    @property
    def staff_token_file(self) -> Path:
        return self.secrets_dir / "staff_token"

    @property
    def rasa_url(self) -> str:
        return f"http://{_url_host(self.rasa_host)}:{self.rasa_port}"

    @property
    def actions_url(self) -> str:
        return f"http://{_url_host(self.actions_host)}:{self.actions_port}"

    @property
    def cors_origins(self) -> tuple[str, ...]:
        """Origins allowed to call the servers from a browser: ``web_origins``, else the web chat page's own."""
        if self.web_origins:
            return self.web_origins
        return tuple(dict.fromkeys((self.actions_url, f"http://127.0.0.1:{self.actions_port}",
                                    f"http://localhost:{self.actions_port}")))


def _url_host(host: str) -> str:
    """How a client on this machine reaches a server bound to ``host`` (a wildcard bind: loopback)."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _registry_model(registry: Registry, name: str) -> str | None:
    found = registry.production_path(name)
    return str(found) if found is not None else None


def settings_from_env(env: dict[str, str] | None = None) -> BotSettings:
    """Settings from environment variables (see the module doc); models default to the registry's production."""
    env = dict(os.environ if env is None else env)
    registry = Registry()
    var_dir = Path(env.get("TEXTML_VAR_DIR", REPO_ROOT / "var"))
    reranker = env.get("CS_RERANKER") or _registry_model(registry, RERANKER_NAME)
    settings = BotSettings(
        kb_dir=Path(env.get("CS_KB_DIR", APP_DIR / "knowledge")),
        state_dir=Path(env.get("CS_STATE_DIR", var_dir / "customer_service")),
        embedder=env.get("CS_EMBEDDER") or _registry_model(registry, EMBEDDER_NAME) or DEFAULT_EMBEDDER,
        reranker=None if reranker in (None, "", "none") else reranker,
        intent_model=env.get("CS_INTENT_MODEL") or _registry_model(registry, INTENT_NAME) or "retrieval",
        actions_host=_host(env, "CS_ACTIONS_HOST"),
        actions_port=_port(env, "CS_ACTIONS_PORT", 5055),
        rasa_host=_host(env, "CS_RASA_HOST"),
        rasa_port=_port(env, "CS_RASA_PORT", 5005),
        web_origins=_origins(env.get("CS_WEB_ORIGINS", "")),
        rasa_token=_token(env, "CS_RASA_TOKEN"),
        actions_token=_token(env, "CS_ACTIONS_TOKEN"),
        staff_token=_token(env, "CS_STAFF_TOKEN"),
        inference_threads=_threads(env.get("CS_INFERENCE_THREADS", "1")),
        scope_model=(env.get("CS_SCOPE_MODEL") or "").strip(),
        datasets_dir=Path(env.get("TEXTML_DATASETS_DIR") or REPO_ROOT.parent / "shared" / "datasets"),
        var_dir=var_dir,
        tracker_store=_choice(env, "CS_TRACKER_STORE", TRACKER_STORES),
        lock_store=_choice(env, "CS_LOCK_STORE", LOCK_STORES),
        postgres_host=_host(env, "POSTGRES_HOST", CONNECT_HINT),
        postgres_port=_port(env, "POSTGRES_PORT", 5432),
        redis_host=_host(env, "REDIS_HOST", CONNECT_HINT),
        redis_port=_port(env, "REDIS_PORT", 6379),
        postgres_password=_password(env, "POSTGRES_PASSWORD"),
        redis_password=_password(env, "REDIS_PASSWORD"),
    )
    settings = apply_tuned(settings, tuned_file(env, var_dir))
    fallback = env.get("CS_FALLBACK_THRESHOLD")
    if fallback:
        value = _float(fallback, "CS_FALLBACK_THRESHOLD", settings.intent_fallback)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"CS_FALLBACK_THRESHOLD={fallback!r} is not a probability; expected 0..1")
        settings = replace(settings, intent_fallback=value, threshold_sources={
            **settings.threshold_sources, "intent_fallback": "CS_FALLBACK_THRESHOLD environment variable"})
    answer, clarify = env.get("CS_ANSWER_THRESHOLD"), env.get("CS_CLARIFY_THRESHOLD")
    if answer or clarify:
        scale = "rerank" if settings.reranker else "cosine"
        current: Thresholds = getattr(settings.retrieval, scale)
        thresholds = Thresholds(answer=_float(answer, "CS_ANSWER_THRESHOLD", current.answer),
                                clarify=_float(clarify, "CS_CLARIFY_THRESHOLD", current.clarify))
        settings = replace(settings, retrieval=replace(settings.retrieval, **{scale: thresholds}), threshold_sources={
            **settings.threshold_sources, "retrieval": "CS_ANSWER_THRESHOLD / CS_CLARIFY_THRESHOLD"})
    return settings


TRACKER_STORES = ("sqlite", "postgresql")  # the first is the default
LOCK_STORES = ("memory", "redis")


def _choice(env: dict[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (case and surrounding spaces ignored, as ``infra/services.py`` reads it); unset: the first."""
    value = env.get(name, "")
    choice = value.strip().lower() or choices[0]
    if choice not in choices:
        raise ValueError(f"{name}={value!r} is not a supported store; expected one of: {', '.join(choices)} "
                         f"(default {choices[0]})")
    return choice


def _password(env: dict[str, str], name: str) -> str | None:
    value = env.get(name)
    if not value:
        return None
    if "\n" in value or "\0" in value:  # as infra/datastores.py; the message leaves the value out: it is a secret
        raise ValueError(f"{name} contains a line break or NUL ({len(value)} characters); choose a password "
                         "without them, or unset it to use the generated one")
    return value


def _port(env: dict[str, str], name: str, default: int) -> int:
    value = env.get(name, str(default))
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ValueError(f"{name}={value!r} is not a TCP port; expected an integer 1..65535")
    return int(value)


HOST = re.compile(r"[A-Za-z0-9.:-]+")
ORIGIN = re.compile(r"https?://(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\])(?::\d{1,5})?")
TOKEN = re.compile(r"[A-Za-z0-9._~-]{16,}")


LISTEN_HINT = "to listen on", "e.g. 127.0.0.1 (loopback, the default) or 0.0.0.0 (every interface)"
CONNECT_HINT = "to connect to", "e.g. 127.0.0.1 (the default: infra/ runs the data stores on loopback)"


def _host(env: dict[str, str], name: str, hint: tuple[str, str] = LISTEN_HINT) -> str:
    """``name``'s host (default 127.0.0.1); ``hint`` says what it is for and gives an example, for the error."""
    value = env.get(name) or "127.0.0.1"
    if not HOST.fullmatch(value):
        purpose, example = hint
        raise ValueError(f"{name}={value!r} is not a host {purpose}; expected an IP address or host name, {example}")
    return value


def _origins(value: str) -> tuple[str, ...]:
    origins = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    for origin in origins:
        if origin != "*" and not ORIGIN.fullmatch(origin):
            raise ValueError(f"CS_WEB_ORIGINS names {origin!r}, which is not an origin; expected scheme://host[:port] "
                             "without a path, comma-separated, e.g. http://127.0.0.1:5055,https://chat.example.com "
                             "(or * for any origin)")
    return origins


def _token(env: dict[str, str], name: str) -> str | None:
    value = env.get(name)
    if not value:
        return None
    if not TOKEN.fullmatch(value):  # the message leaves the value out: it is a secret
        raise ValueError(f"{name} is not a usable token ({len(value)} characters); expected at least 16 URL-safe "
                         "characters (A-Z a-z 0-9 - _ . ~), e.g. from "
                         "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`, or unset it to have "
                         "one generated")
    return value


def _threads(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"CS_INFERENCE_THREADS={value!r} is not a thread count; expected an integer >= 1")
    return int(value)


def _float(value: str | None, name: str, default: float) -> float:
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a number; expected e.g. 0.5") from None
