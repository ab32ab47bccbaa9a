"""A small client for the conversation part of Rasa's HTTP API: read a tracker, append events to it.

This is how a person's words reach a customer while the bot is paused: ``POST
/conversations/{id}/tracker/events?execute_side_effects=true&output_channel=latest`` appends the
events under the conversation's lock and sends every ``bot`` event among them through the output
channel of the customer's latest message (Rasa 3.6, ``server.append_events`` ->
``MessageProcessor.execute_side_effects``). Only a channel that can push (socket.io) shows it at
once; over REST it is kept in the conversation only. ``/execute`` would do the same with a domain
response but is deprecated and takes a second request for the text.

Rasa 3.6 takes its API token only as the ``token`` query parameter, so this module keeps httpx's
request log (which prints URLs at INFO) at WARNING: the token must never reach a log.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

import httpx

logging.getLogger("httpx").setLevel(logging.WARNING)


class RasaApiError(RuntimeError):
    """The Rasa server could not be reached or refused the request; the message says which and why."""


class RasaConversations:
    """Trackers on one Rasa server (``url``) with its API ``token``; each call is one HTTP request."""

    def __init__(self, url: str, token: str, timeout: float = 15.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def tracker(self, sender_id: str) -> dict:
        """The conversation's tracker with every event of every session (``include_events=ALL``)."""
        return self._call("GET", sender_id, "tracker", {"include_events": "ALL"})

    def append(self, sender_id: str, events: list[dict]) -> dict:
        """Append ``events`` and send their bot messages to the customer's latest channel; the tracker state
        after it (without events)."""
        return self._call("POST", sender_id, "tracker/events",
                          {"include_events": "NONE", "execute_side_effects": "true", "output_channel": "latest"},
                          events)

    def _call(self, method: str, sender_id: str, path: str, params: dict, body: list | None = None) -> dict:
        url = f"{self.url}/conversations/{quote(sender_id, safe='')}/{path}"
        try:
            answer = httpx.request(method, url, params={**params, "token": self.token}, json=body,
                                   timeout=self.timeout)
        except httpx.HTTPError as error:
            raise RasaApiError(f"the Rasa server at {self.url} is not reachable ({type(error).__name__}); start "
                               "it with `python -m apps.customer_service rasa` (or check CS_RASA_HOST/CS_RASA_PORT)"
                               ) from None
        if answer.status_code in (401, 403):
            raise RasaApiError(f"the Rasa server at {self.url} refused the API token (HTTP {answer.status_code}); it "
                               "runs with another CS_RASA_TOKEN or state folder (<state>/secrets/rasa_token)")
        if answer.status_code != 200:
            raise RasaApiError(f"the Rasa server at {self.url} answered {method} .../{path} with HTTP "
                               f"{answer.status_code}: {answer.text[:300]}")
        return answer.json()
