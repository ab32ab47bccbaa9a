"""The support desk on the action server: a page for staff with the bot's decisions, latency, open tickets
and the unanswered questions, behind the staff login.

| request | answer |
|---|---|
| ``GET /desk/login``, ``POST /desk/login`` (form field ``token``) | the login form; the staff token opens a session |
| ``GET /desk`` | the desk page (logged in; else a redirect to the login) |
| ``GET /desk/data?period=1h|24h|7d`` | the desk's figures, tickets and SVG charts as JSON (``desk_data.py``) |
| ``GET /desk/desk.js`` | the page's script (no library; the charts are drawn by the server) |
| ``POST /desk/logout`` | ends the session |

The page polls ``/desk/data`` every few seconds and answers tickets through the existing staff
endpoints (``POST /tickets/{id}/reply`` and ``/close``, ``staff_api.py``), which accept a desk
session with its CSRF token besides the bearer token. How staff log in, and why a cookie:
``desk_auth.py``. This module is the I/O shell: it reads the event log and the ticket store off
the event loop, samples the latency histogram once a minute, and hands the rest to pure code.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime

from apps.customer_service.desk_auth import COOKIE, DeskSessions, same_origin, session_cookie
from apps.customer_service.desk_data import DeskError, Period, build_desk, parse_period
from apps.customer_service.desk_latency import LatencyTrack
from apps.customer_service.desk_unanswered import UnansweredGroups
from apps.customer_service.events import EventLog, utc_now
from apps.customer_service.report import unanswered_texts
from apps.customer_service.settings import APP_DIR
from apps.customer_service.tickets import TicketStore

log = logging.getLogger(__name__)
DESK_PREFIX = "/desk"
PUBLIC_PATHS = frozenset({"/desk/login", "/desk/desk.js"})
WEB = APP_DIR / "web"
SAMPLE_SECONDS = 60.0  # latency histogram samples: one point of the latency chart per minute
PAGE_HEADERS = {
    # scripts only from this server (the page has no inline script), no framing (clickjacking), no caching
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'",
    # same-origin, not no-referrer: with no-referrer Chromium sends the login form with `Origin: null`
    "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin", "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}
NOT_LOGGED_IN = ("the desk needs a staff login: open /desk/login and enter the staff token (CS_STAFF_TOKEN or "
                 "<state>/secrets/staff_token), or send it as `Authorization: Bearer TOKEN`")


def is_desk_path(path: str) -> bool:
    return path == DESK_PREFIX or path.startswith(DESK_PREFIX + "/")


class Desk:
    """The desk's state in the server: sessions, latency samples, cached question groups."""

    def __init__(self, events: EventLog | None, tickets: TicketStore, encode, latency_histogram, staff_token: str,
                 sample_seconds: float = SAMPLE_SECONDS) -> None:
        self.events = events
        self.tickets = tickets
        self.sessions = DeskSessions(staff_token)
        self.latency = LatencyTrack(latency_histogram)
        # past the actions' per-message cache (encode_cache.CachedEncoder): thousands of grouped texts would evict
        # the few that one customer message's intent, scope and retrieval steps share
        encode = getattr(encode, "encode_uncached", encode)
        self.groups = UnansweredGroups(encode) if encode is not None else None
        self.sample_seconds = sample_seconds

    def allows(self, request) -> bool:
        """For ``staff_api``: a logged-in desk (with its CSRF token for a reply or close) may use ``/tickets``."""
        return self.sessions.allows(request)

    def read(self, period: Period, now: datetime):
        """The period's decisions and the open tickets (blocking: SQLite)."""
        decisions = self.events.read(since=now - period.span) if self.events is not None else []
        return decisions, self.tickets.list("open")

    async def data(self, period: Period) -> dict:
        now = utc_now()
        decisions, tickets = await asyncio.to_thread(self.read, period, now)
        texts = unanswered_texts(decisions)
        unanswered = (self.groups.lookup(period.name, texts) if self.groups is not None
                      else {"status": "off", "groups": [], "texts": len(texts), "age_s": None, "seconds": None})
        return await asyncio.to_thread(build_desk, decisions, tickets, period, now,
                                       self.latency.series(now - period.span, now), self.latency.summary(), unanswered)

    async def sample_forever(self) -> None:
        while True:
            self.latency.sample(utc_now())
            await asyncio.sleep(self.sample_seconds)


def page(name: str, **values: str) -> str:
    text = (WEB / name).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace(f"__{key.upper()}__", value)
    return text


def add_desk_routes(app, desk: Desk, staff_token: str, cors_origins: Sequence[str]) -> None:
    """Register the ``/desk`` routes and their login check on the Sanic ``app``."""
    from html import escape

    from sanic import response

    from apps.customer_service.action_server import bearer_matches  # here: action_server imports this module

    def html(body: str, status: int = 200, **headers: str):
        return response.html(body, status=status, headers={**PAGE_HEADERS, **headers})

    @app.on_request
    async def require_desk_login(request):
        if not is_desk_path(request.path) or request.path in PUBLIC_PATHS or request.method == "OPTIONS":
            return None
        if desk.sessions.allows(request) or bearer_matches(request.headers.get("authorization"), staff_token):
            return None
        if request.method == "GET" and request.path == DESK_PREFIX:
            return response.redirect("/desk/login", status=303, headers={"Cache-Control": "no-store"})
        return response.json({"error": NOT_LOGGED_IN + "; a logged-in page sends its X-CSRF-Token with a POST"},
                             status=401, headers={"WWW-Authenticate": "Bearer"})

    @app.after_server_start
    async def start_sampling(app_, _loop=None):
        app_.add_task(desk.sample_forever(), name="desk-latency-samples")

    @app.get("/desk/login")
    async def login_form(request):
        if desk.sessions.session_of(request) is not None:
            return response.redirect(DESK_PREFIX, status=303)
        return html(page("desk_login.html", error=""))

    @app.post("/desk/login")
    async def login(request):
        if not same_origin(request.headers.get("origin"), request.host, tuple(cors_origins)):
            return html(page("desk_login.html", error="This login came from another site's page; open "
                                                      "/desk/login on this server."), status=403)
        session = desk.sessions.login(request.form.get("token") if request.form else None)
        if session is None:
            await asyncio.sleep(0.5)  # slows guessing (the token is 256 random bits, so this is belt and braces)
            return html(page("desk_login.html", error=escape(
                "That is not the staff token. It is in var/customer_service/secrets/staff_token (or CS_STAFF_TOKEN) "
                "on the server.")), status=401)
        log.info("desk login")
        return response.redirect(DESK_PREFIX, status=303, headers={
            "Set-Cookie": session_cookie(session, secure=request.scheme == "https"), "Cache-Control": "no-store"})

    @app.post("/desk/logout")
    async def logout(request):
        desk.sessions.logout(request.cookies.get(COOKIE))
        return response.redirect("/desk/login", status=303, headers={
            "Set-Cookie": session_cookie(None, secure=request.scheme == "https")})

    @app.get(DESK_PREFIX)
    async def desk_page(request):
        session = desk.sessions.session_of(request)
        if session is None:  # a bearer token alone opens the JSON, not the page (the page needs the cookie)
            return response.redirect("/desk/login", status=303)
        return html(page("desk.html", csrf=session.csrf))

    @app.get("/desk/desk.js")
    async def desk_script(_request):
        return response.text(page("desk.js"), content_type="text/javascript; charset=utf-8",
                             headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})

    @app.get("/desk/data")
    async def desk_data(request):
        try:
            period = parse_period(request.args.get("period"))
        except DeskError as error:
            return response.json({"error": str(error)}, status=422)
        return response.json(await desk.data(period), headers={"Cache-Control": "no-store"})
