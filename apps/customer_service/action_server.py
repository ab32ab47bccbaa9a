"""The action server: rasa-sdk actions plus the intent endpoint and the web chat page, in one process.

It runs in the project's Python 3.11 environment (torch, core), loads the embedder, the
re-ranker and the intent model once, and serves:

* ``POST /webhook``, ``GET /actions``, ``GET /health``: rasa-sdk's action endpoint;
* ``POST /intents`` ``{"texts": [...], "n": 10}`` -> ``{"model": ..., "rankings": [[{"name", "confidence"}]],
  "scopes": [{"decision": "in"|"unsure"|"out", "p_out", ...}] or null}``: what the Rasa NLU component
  ``CoreIntentClassifier`` asks (Rasa itself runs on Python 3.10 without torch); ``scopes`` is null
  when no scope model is loaded (``scope.py``);
* ``GET /metrics``: Prometheus metrics (``metrics.py``): decisions, hand-off reasons, intents,
  action latency; counters only, never a message text;
* ``GET /`` : the web chat page, which talks to the Rasa server's socket.io channel, and
  ``GET /vendor/socket.io.min.js``, the socket.io client it loads (``infra/web_assets.py``, from npm);
* ``/tickets...``: the agents' endpoints (``staff_api.py``): read, answer and close hand-off tickets,
  with the staff token (``CS_STAFF_TOKEN``), not the action server token.

Every route but ``GET /``, its socket.io client, ``GET /health`` and ``/tickets`` needs the action
server token (``CS_ACTIONS_TOKEN`` or ``<state>/secrets/actions_token``) as ``Authorization: Bearer
TOKEN``: Rasa sends it (``endpoints.yml``), and so does the Rasa component that calls ``/intents``; Prometheus sends it
from a ``credentials_file``. Other requests get 401. CORS allows only the web chat page's origins
(``CS_WEB_ORIGINS``). Log records are masked (``install_masking``: every logger, Sanic's and
rasa-sdk's included). Each decision also goes to the event log (``<state>/events.sqlite3``, masked
text; ``events.py``).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from apps.customer_service.actions import make_actions
from apps.customer_service.desk import Desk, add_desk_routes, is_desk_path
from apps.customer_service.encode_cache import CachedEncoder
from apps.customer_service.events import EventLog
from apps.customer_service.handover import Handover, handover_for
from apps.customer_service.intents import ClassifierIntents, RetrievalIntents
from apps.customer_service.masking import install_masking
from apps.customer_service.metrics import BotMetrics
from apps.customer_service.recorder import DecisionRecorder
from apps.customer_service.retrieval import IndexHolder, Retriever
from apps.customer_service.scope import ScopeModel, ScopeModelError
from apps.customer_service.settings import APP_DIR, BotSettings
from apps.customer_service.staff_api import add_staff_routes, is_staff_path
from apps.customer_service.tickets import TicketStore
from apps.customer_service.tokens import actions_token, staff_token
from infra.web_assets import socketio_client_file

log = logging.getLogger(__name__)
WEB_PAGE = APP_DIR / "web" / "index.html"
MAX_INTENT_TEXTS = 256
SOCKETIO_CLIENT_PATH = "/vendor/socket.io.min.js"  # the web chat's socket.io client (infra/web_assets.py)
# everything else needs the token, routes added later included
OPEN_PATHS = frozenset({"/", "/health", SOCKETIO_CLIENT_PATH})


@dataclass
class Services:
    retriever: Retriever
    tickets: TicketStore
    intents: ClassifierIntents | RetrievalIntents
    events: EventLog | None = None  # None: decisions are counted but not logged
    scope: ScopeModel | None = None  # None: no in / out of scope decision (the retrieval thresholds decide)
    encode: object = None  # the embedder's encode function, which the scope model's vectors come from


def load_services(settings: BotSettings) -> Services:
    """Load the models named by ``settings`` (slow: seconds per model)."""
    import torch

    from core.inference.embedder import Embedder

    embedder = Embedder.load(settings.embedder)
    encode = CachedEncoder(embedder.encode)  # /intents, the scope decision and retrieval embed the same text
    reranker = None
    if settings.reranker:
        from core.inference.reranker import Reranker

        reranker = Reranker.load(settings.reranker)
    holder = IndexHolder(settings.index_dir)
    retriever = Retriever(encode, holder, reranker, settings.retrieval)
    if settings.intent_model == "retrieval":
        intents = RetrievalIntents(encode, holder)
    else:
        from core.inference.classifier import TextClassifier

        intents = ClassifierIntents(TextClassifier.load(settings.intent_model))
    # Requests carry one short text each: on a busy machine, more than one torch thread per request
    # mostly adds OpenMP spin-waiting (measured here: ~20 ms per MiniLM call with 1 thread, ~400 ms with 2).
    torch.set_num_threads(settings.inference_threads)
    log.info("action server models: embedder %s, re-ranker %s, intents %s (%d torch thread(s))", settings.embedder,
             settings.reranker, settings.intent_model, settings.inference_threads)
    log.info("thresholds: retrieval %s (%s); intent fallback %s (%s)", settings.retrieval.rerank if reranker
             else settings.retrieval.cosine, settings.threshold_sources.get("retrieval"), settings.intent_fallback,
             settings.threshold_sources.get("intent_fallback"))
    log.info("intent fusion: weight %s, fused %s (%s)", settings.retrieval.intent_weight, settings.retrieval.fused,
             settings.threshold_sources.get("intent_fusion", "off: not tuned for these models"))
    scope = load_scope(settings)
    return Services(retriever, TicketStore(settings.tickets_db), intents, EventLog(settings.events_db), scope,
                    encode)


def load_scope(settings: BotSettings) -> ScopeModel | None:
    """The scope model, if there is one for this embedder; otherwise None, said in the log with what to do."""
    folder = settings.scope_dir
    if folder is None:
        log.info("out-of-scope detection is off (CS_SCOPE_MODEL=none)")
        return None
    try:
        scope = ScopeModel.load(folder)
    except ScopeModelError as error:
        log.warning("out-of-scope detection is off: %s", error)
        return None
    if scope.card.embedder != settings.embedder:
        log.warning("out-of-scope detection is off: the scope model at %s was trained with embedder %s, the bot "
                    "serves %s; train it again with `python -m apps.customer_service scope train`", folder,
                    scope.card.embedder, settings.embedder)
        return None
    log.info("scope model %s: decline at p_out >= %s, rephrase at >= %s (%s)", folder, scope.card.thresholds.decline,
             scope.card.thresholds.unsure, scope.card.figures)
    return scope


def bearer_matches(authorization: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header value is ``Bearer <token>`` (compared in constant time)."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


def build_app(services: Services, rasa_url: str, token: str, cors_origins: Sequence[str], *,
              handover: Handover | None = None, staff_token: str | None = None,
              socketio_client: Path | None = None):
    """The Sanic app: rasa-sdk's endpoint, ``/intents``, ``/metrics`` and the web page, behind the token check."""
    from rasa_sdk.endpoint import create_app
    from rasa_sdk.executor import ActionExecutor
    from sanic import response

    if not token:
        raise ValueError("the action server token is empty; expected the token Rasa sends (tokens.actions_token)")
    metrics = BotMetrics()
    executor = ActionExecutor()
    for action in make_actions(services.retriever, services.tickets, DecisionRecorder(services.events, metrics)):
        # register_action would register action.run; the same run, timed (rasa-sdk calls it with 3 arguments)
        executor.register_function(action.name(), metrics.timed(action.name(), action.run))
    app = create_app(executor, cors_origins=list(cors_origins))

    @app.on_request
    async def require_token(request):
        # registered after rasa-sdk's CORS middleware, which answers preflight OPTIONS requests first
        if request.path in OPEN_PATHS or bearer_matches(request.headers.get("authorization"), token):
            return None
        if handover is not None and (is_staff_path(request.path) or is_desk_path(request.path)):
            # staff_api checks the staff token, desk.py the staff login
            return None
        return response.json({"error": "this endpoint needs the action server token as `Authorization: Bearer "
                                       "TOKEN` (CS_ACTIONS_TOKEN or <state>/secrets/actions_token)"},
                             status=401, headers={"WWW-Authenticate": "Bearer"})

    @app.post("/intents")
    async def intents(request):
        body = request.json if isinstance(request.json, dict) else {}
        texts, n = body.get("texts"), body.get("n", 10)
        if (not isinstance(texts, list) or not texts or len(texts) > MAX_INTENT_TEXTS
                or not all(isinstance(t, str) and t.strip() for t in texts)):
            return response.json({"error": f"expected {{\"texts\": [1..{MAX_INTENT_TEXTS} non-empty strings]}}"},
                                 status=422)
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            return response.json({"error": f"n is {n!r}; expected an integer >= 1"}, status=422)
        texts = [t[:1000] for t in texts]
        try:
            ranked = services.intents.rank(texts, n)
            scopes = services.scope.decide(texts, services.encode) if services.scope is not None else None
        except Exception as error:  # noqa: BLE001 - the component falls back to Rasa's own intent
            log.exception("intent model failed")
            return response.json({"error": f"intent model failed: {error}"}, status=503)
        return response.json({"model": services.intents.name, "rankings": [
            [{"name": name, "confidence": confidence} for name, confidence in row] for row in ranked],
            "scopes": [decision.to_dict() for decision in scopes] if scopes is not None else None})

    @app.get("/metrics")
    async def prometheus_metrics(_request):
        body, content_type = metrics.render()
        return response.raw(body, content_type=content_type)

    @app.get("/")
    async def chat_page(_request):
        page = WEB_PAGE.read_text(encoding="utf-8").replace("__RASA_URL__", rasa_url)
        return response.html(page)

    # hand-over: the agents' endpoints, and the socket.io client that lets the page receive their replies
    if handover is not None:
        # the support desk (desk.py): staff log in with the staff token; its page answers through /tickets
        desk = Desk(services.events, services.tickets, services.encode, metrics.latency, staff_token or "")
        add_desk_routes(app, desk, staff_token or "", cors_origins)
        add_staff_routes(app, handover, staff_token or "", allow=desk.allows)

    @app.get(SOCKETIO_CLIENT_PATH)
    async def socketio_client_js(_request):
        if socketio_client is None or not socketio_client.is_file():
            return response.json({"error": f"the socket.io client is not installed at {socketio_client}: run "
                                           "`make web-assets` (python -m infra.web_assets fetch)"}, status=404)
        return await response.file(socketio_client, mime_type="text/javascript",
                                   headers={"Cache-Control": "public, max-age=86400"})

    return app


def serve(settings: BotSettings) -> None:
    """Load the models and serve until interrupted (one process, so the models load once)."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(logging.INFO)
    install_masking()
    services = load_services(settings)
    client = socketio_client_file(settings.var_dir)
    if not client.is_file():
        log.warning("no socket.io client at %s: the web chat cannot connect; run `make web-assets`", client)
    app = build_app(services, settings.rasa_url, actions_token(settings), settings.cors_origins,
                    handover=handover_for(settings), staff_token=staff_token(settings), socketio_client=client)
    log.info("action server listening on %s (web chat at %s/)", settings.actions_url, settings.actions_url)
    app.run(host=settings.actions_host, port=settings.actions_port, single_process=True, access_log=False,
            motd=False)

