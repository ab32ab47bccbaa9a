"""Rasa input channels that mask personal data in each message before the agent sees it.

``MaskedRestInput`` and ``MaskedSocketIOInput`` are Rasa's own REST and socket.io channels with the
message handler wrapped: ``UserMessage.text`` goes through ``mask_pii`` (card numbers, IBANs,
e-mail addresses, phone numbers; ``apps/customer_service/masking.py``), so NLU, the policies, the
tracker store, the action server and every log see only the masked text. Their ``name()`` stays
``rest`` / ``socketio``, so the URLs are unchanged (``/webhooks/rest/webhook``, ``/socket.io``).
``credentials.yml`` names them instead of ``rest:`` and ``socketio:``.

Also, in the Rasa process:

* log records are masked as they are made (``install_masking``), a second line of defence for
  anything Rasa logs outside the message (it logs a failed REST message's text at error level;
  the REST channel masks that text too);
* socket.io accepts browser connections only from ``CS_WEB_ORIGINS`` (comma-separated, set by
  ``rasa_project.environment()``): the ``--cors`` option covers Rasa's HTTP responses, not the
  socket.io server, which otherwise connects any origin (websockets are outside CORS). The check
  is on socket.io's ``connect`` event, not engine.io's own origin option: that one would add a
  second ``Access-Control-Allow-Origin`` header next to Sanic-CORS's, which browsers reject.

Two fixes make Rasa 3.6's socket.io channel answer at all with this environment's python-socketio
5.x: the room of a persistent session is joined with ``await`` (Rasa forgot it, so replies went to
an empty room), and custom JSON (the actions' ``{"kb": ...}``) is sent as ``{"custom": ...}``
instead of as ``emit()`` keyword arguments (a TypeError that lost the whole turn). The same output
serves messages that do not answer a customer's message: an agent's reply appended through the HTTP
API with ``output_channel=latest`` (``apps/customer_service/handover.py``) goes through
``get_output_channel``.

Runs inside the Rasa server (Python 3.10, Rasa 3.6); the masking module is imported from the
repository (``PYTHONPATH`` holds the repository root), not copied.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from rasa.core.channels.channel import UserMessage
from rasa.core.channels.rest import RestInput
from rasa.core.channels.socketio import SocketIOInput, SocketIOOutput
from sanic import Blueprint
from sanic.request import Request

from apps.customer_service.masking import install_masking, mask_pii

install_masking()
logger = logging.getLogger(__name__)

Handler = Callable[[UserMessage], Awaitable[Any]]


def masked(on_new_message: Handler) -> Handler:
    """``on_new_message`` that first replaces the message's text by its masked form."""

    async def handler(message: UserMessage) -> Any:
        if isinstance(message.text, str):
            message.text = mask_pii(message.text)
        return await on_new_message(message)

    return handler


def web_origins() -> list[str]:
    """The origins allowed to connect from a browser (``CS_WEB_ORIGINS``); empty: any (Rasa's default)."""
    return [part.strip() for part in os.environ.get("CS_WEB_ORIGINS", "").split(",") if part.strip()]


class MaskedRestInput(RestInput):
    """Rasa's REST channel (``/webhooks/rest/webhook``) with each message masked before the agent sees it."""

    def _extract_message(self, req: Request) -> str | None:
        # masked here too, so the text Rasa logs when handling a message fails is masked
        text = super()._extract_message(req)
        return mask_pii(text) if isinstance(text, str) else text

    def blueprint(self, on_new_message: Handler) -> Blueprint:
        return super().blueprint(masked(on_new_message))


class CustomJsonSocketIOOutput(SocketIOOutput):
    """Sends a custom JSON payload as ``{"custom": payload}``.

    Rasa 3.6 passes the payload as ``emit()``'s keyword arguments, so the actions' ``{"kb": ...}``
    raised TypeError and the socket.io client got no answer at all.
    """

    async def send_custom_json(self, recipient_id: str, json_message: dict[str, Any], **kwargs: Any) -> None:
        await self._send_message(recipient_id, {"custom": json_message})


def custom_json_output(on_new_message: Handler) -> Handler:
    """``on_new_message`` with Rasa's socket.io output replaced by :class:`CustomJsonSocketIOOutput`."""

    async def handler(message: UserMessage) -> Any:
        output = message.output_channel
        if type(output) is SocketIOOutput:
            message.output_channel = CustomJsonSocketIOOutput(output.sio, output.bot_message_evt)
        return await on_new_message(message)

    return handler


class MaskedSocketIOInput(SocketIOInput):
    """Rasa's socket.io channel with each message masked and browser origins limited to ``CS_WEB_ORIGINS``."""

    def get_output_channel(self) -> CustomJsonSocketIOOutput | None:
        """The output for messages sent through the HTTP API (a person's reply during a hand-off)."""
        output = super().get_output_channel()
        return CustomJsonSocketIOOutput(output.sio, output.bot_message_evt) if output is not None else None

    def blueprint(self, on_new_message: Handler) -> Blueprint:
        blueprint = super().blueprint(masked(custom_json_output(on_new_message)))
        if self.session_persistence:
            self._await_enter_room()
        origins = web_origins()
        if self.sio is not None and origins and "*" not in origins:
            self._limit_origins(origins)
        return blueprint

    def _await_enter_room(self) -> None:
        """Rasa's ``session_request`` handler, with ``enter_room`` awaited.

        python-socketio 5.x made ``AsyncServer.enter_room`` a coroutine; Rasa 3.6 calls it without
        ``await``, so the socket never joined its session's room and got no replies.
        """
        sio = self.sio

        async def session_request(sid: str, data: dict | None) -> None:
            data = data or {}
            if data.get("session_id") is None:
                data["session_id"] = uuid.uuid4().hex
            await sio.enter_room(sid, data["session_id"], namespace=self.namespace)
            await sio.emit("session_confirm", data["session_id"], room=sid, namespace=self.namespace)

        sio.on("session_request", namespace=self.namespace)(session_request)

    def _limit_origins(self, origins: list[str]) -> None:
        """Refuse socket.io connections whose ``Origin`` header is not in ``origins`` (no header: not a browser)."""
        namespace = self.namespace or "/"
        rasa_connect = self.sio.handlers[namespace]["connect"]

        async def connect(sid: str, environ: dict, auth: dict | None = None) -> bool:
            origin = environ.get("HTTP_ORIGIN")
            if origin and origin not in origins:
                logger.warning("socket.io connection from origin %s refused; allowed: %s (CS_WEB_ORIGINS)",
                               origin, ", ".join(origins))
                return False
            return await rasa_connect(sid, environ, auth)

        self.sio.on("connect", namespace=self.namespace)(connect)
