"""Staff login for the support desk: the staff token once, then a short-lived session in an HttpOnly cookie.

Why a cookie and not the token in ``sessionStorage``: the desk shows text customers typed (masked,
and always inserted as text, never as HTML), so it must assume a script injection may one day get
through. A script can read ``sessionStorage`` and send the long-lived staff token, which also
opens the ``/tickets`` API, anywhere. An ``HttpOnly`` cookie cannot be read by scripts, and it
holds only a random session id that expires (8 hours) and dies at logout or server restart.
The cost of cookies is cross-site request forgery, answered three ways: ``SameSite=Strict`` (no
other site's page sends it), a per-session CSRF token that every state-changing request must
carry in the ``X-CSRF-Token`` header or the ``csrf`` form field (a page on another port of the
same host is "same-site", and only the desk page knows the token), and the login refusing a
foreign ``Origin``. The desk's pages add ``Content-Security-Policy`` (scripts from this server
only, no framing). ``curl`` and scripts keep using ``Authorization: Bearer <staff token>``.

Sessions live in the action server's memory: one process serves them, and a restart logging staff
out is acceptable for a desk (they log in again with the token).
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

COOKIE = "cs_desk_session"
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 8 * 3600
MAX_SESSIONS = 1000  # logins kept; the oldest goes first
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Session:
    id: str
    csrf: str
    expires: float  # time.monotonic()
    created: float = field(default_factory=time.monotonic)


class DeskSessions:
    """Logins with the staff token, and the sessions they open."""

    def __init__(self, staff_token: str, lifetime: float = SESSION_SECONDS, max_sessions: int = MAX_SESSIONS) -> None:
        if not staff_token:
            raise ValueError("the staff token is empty; expected the agents' token (tokens.staff_token)")
        self.staff_token = staff_token
        self.lifetime = lifetime
        self.max_sessions = max_sessions
        self._sessions: dict[str, Session] = {}

    def login(self, offered: object) -> Session | None:
        """A new session when ``offered`` is the staff token (compared in constant time); None otherwise."""
        if not isinstance(offered, str) or not hmac.compare_digest(offered.strip().encode(), self.staff_token.encode()):
            return None
        self._expire()
        while len(self._sessions) >= self.max_sessions:
            self._sessions.pop(next(iter(self._sessions)))
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), time.monotonic() + self.lifetime)
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id, or None (unknown, logged out or expired)."""
        session = self._sessions.get(session_id or "")
        if session is None or session.expires <= time.monotonic():
            self._sessions.pop(session_id or "", None)
            return None
        return session

    def logout(self, session_id: str | None) -> None:
        self._sessions.pop(session_id or "", None)

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [key for key, session in self._sessions.items() if session.expires <= now]:
            del self._sessions[key]

    def session_of(self, request) -> Session | None:
        """The session a Sanic request's cookie names, if it is live."""
        return self.get(request.cookies.get(COOKIE))

    def allows(self, request) -> bool:
        """Whether a request is a logged-in desk's: a live session, and for a state change its CSRF token too."""
        session = self.session_of(request)
        if session is None:
            return False
        if request.method in SAFE_METHODS:
            return True
        offered = request.headers.get(CSRF_HEADER) or ""
        if not offered and request.form:
            offered = request.form.get("csrf") or ""
        return hmac.compare_digest(offered.encode(), session.csrf.encode())


def session_cookie(session: Session | None, secure: bool) -> str:
    """A ``Set-Cookie`` value that stores ``session`` (None: deletes the cookie)."""
    value, age = (session.id, SESSION_SECONDS) if session is not None else ("", 0)
    return (f"{COOKIE}={value}; Max-Age={age}; Path=/; HttpOnly; SameSite=Strict" + ("; Secure" if secure else ""))


def same_origin(origin: str | None, host: str | None, allowed: tuple[str, ...] = ()) -> bool:
    """Whether a request's ``Origin`` (absent: a same-origin navigation or a tool) is this server or allowed."""
    if not origin:
        return True
    if origin == "null":
        return False
    return urlsplit(origin).netloc == (host or "") or origin in allowed
