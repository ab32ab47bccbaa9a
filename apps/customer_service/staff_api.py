"""The agents' HTTP endpoints on the action server: read, answer and close hand-off tickets.

| request | answer |
|---|---|
| ``GET /tickets?status=open|closed|all`` | ``{"tickets": [...]}`` (as stored; no transcript sync) |
| ``GET /tickets/{id}`` | ``{"ticket": {...}}`` with the customer's messages since the hand-off |
| ``POST /tickets/{id}/reply`` ``{"text": "..."}`` | ``{"ticket", "channel", "pushed"}``: sent to the customer |
| ``POST /tickets/{id}/close`` | ``{"ticket", "channel", "pushed"}``: the bot is back in the conversation |

``{id}`` is ``42`` or ``T-000042``. Every request needs the staff token (``CS_STAFF_TOKEN`` or
``<state>/secrets/staff_token``) as ``Authorization: Bearer TOKEN``, not the action server token:
Rasa holds that one, and Rasa must not be able to speak as a person. Errors: 401 (token), 404
(unknown ticket), 409 (closed ticket), 422 (bad id, status or reply), 502 (Rasa unreachable; the
ticket is unchanged). The work is ``handover.py``'s, run off the event loop (SQLite and HTTP calls block).
"""

from __future__ import annotations

import asyncio

from apps.customer_service.handover import Handover, Outcome, ReplyError
from apps.customer_service.rasa_api import RasaApiError
from apps.customer_service.tickets import TicketClosedError, TicketError, TicketNotFoundError, parse_ticket_id

STAFF_PREFIX = "/tickets"
STATUS_FILTERS = {"open": "open", "closed": "closed", "all": None}


def is_staff_path(path: str) -> bool:
    return path == STAFF_PREFIX or path.startswith(STAFF_PREFIX + "/")


def error_status(error: Exception) -> int:
    """The HTTP status for a hand-over error (the order matters: the specific ticket errors first)."""
    if isinstance(error, TicketNotFoundError):
        return 404
    if isinstance(error, TicketClosedError):
        return 409
    if isinstance(error, ReplyError | TicketError):
        return 422
    if isinstance(error, RasaApiError):
        return 502
    raise error


def add_staff_routes(app, handover: Handover, staff_token: str, allow=None) -> None:
    """Register the ``/tickets`` routes and their token check on the Sanic ``app``.

    ``allow(request) -> bool``: another way in besides the bearer token (the desk's logged-in page,
    ``desk_auth.DeskSessions.allows``: its session cookie, and its CSRF token for a reply or close).
    """
    from sanic import response

    from apps.customer_service.action_server import bearer_matches  # here: action_server imports this module

    if not staff_token:
        raise ValueError("the staff token is empty; expected the agents' token (tokens.staff_token)")

    @app.on_request
    async def require_staff_token(request):
        if not is_staff_path(request.path) or request.method == "OPTIONS":
            return None
        if bearer_matches(request.headers.get("authorization"), staff_token) or (allow is not None and allow(request)):
            return None
        return response.json({"error": "the ticket endpoints need the staff token as `Authorization: Bearer TOKEN` "
                                       "(CS_STAFF_TOKEN or <state>/secrets/staff_token)"},
                             status=401, headers={"WWW-Authenticate": "Bearer"})

    async def respond(work, render):
        """``render(work())`` as JSON, with ``work`` in a thread; a hand-over error as its status and message."""
        try:
            result = await asyncio.to_thread(work)
        except (ReplyError, TicketError, RasaApiError) as error:
            return response.json({"error": str(error)}, status=error_status(error))
        return response.json(render(result))

    def delivered(outcome: Outcome) -> dict:
        return {"ticket": outcome.ticket.to_dict(), "channel": outcome.channel, "pushed": outcome.pushed}

    @app.get(STAFF_PREFIX)
    async def list_tickets(request):
        status = request.args.get("status", "open")
        if status not in STATUS_FILTERS:
            return response.json({"error": f"status {status!r} is not a ticket filter; use one of "
                                           f"{', '.join(STATUS_FILTERS)}"}, status=422)
        return await respond(lambda: handover.tickets.list(STATUS_FILTERS[status]),
                             lambda tickets: {"tickets": [ticket.to_dict() for ticket in tickets]})

    @app.get(f"{STAFF_PREFIX}/<ticket>")
    async def show_ticket(request, ticket: str):
        return await respond(lambda: handover.show(parse_ticket_id(ticket)), lambda shown: {"ticket": shown.to_dict()})

    @app.post(f"{STAFF_PREFIX}/<ticket>/reply")
    async def reply(request, ticket: str):
        body = request.json if isinstance(request.json, dict) else {}
        if "text" not in body:
            return response.json({"error": "expected a JSON body {\"text\": \"the reply to the customer\"}"},
                                 status=422)
        return await respond(lambda: handover.reply(parse_ticket_id(ticket), body["text"]), delivered)

    @app.post(f"{STAFF_PREFIX}/<ticket>/close")
    async def close(request, ticket: str):
        return await respond(lambda: handover.close(parse_ticket_id(ticket)), delivered)
