"""A terminal chat with the running bot over Rasa's REST channel (what the web page does, in a shell)."""

from __future__ import annotations

import uuid

import httpx

MAX_CHARS = 1000


def send(rasa_url: str, sender: str, message: str, timeout: float = 30.0) -> list[dict]:
    """POST one message to the REST webhook; returns the bot's messages (``text``, ``buttons``, ``custom``)."""
    reply = httpx.post(f"{rasa_url}/webhooks/rest/webhook", json={"sender": sender, "message": message},
                       timeout=timeout)
    reply.raise_for_status()
    return reply.json()


def chat(rasa_url: str, sender: str | None = None) -> None:
    """Read lines from stdin until EOF, ``/quit`` or Ctrl-C; print each reply."""
    sender = sender or f"terminal-{uuid.uuid4().hex[:8]}"
    print(f"Chatting with {rasa_url} as {sender}. Type /quit to leave.")
    while True:
        try:
            line = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return
        if line in ("/quit", "/exit"):
            return
        if not line:
            continue
        try:
            messages = send(rasa_url, sender, line[:MAX_CHARS])
        except httpx.HTTPError as error:
            print(f"bot> (the bot at {rasa_url} is not reachable: {error}; start it with "
                  "`python -m apps.customer_service rasa`)")
            continue
        for message in messages or [{"text": "(no answer)"}]:
            if message.get("text"):
                print(f"bot> {message['text']}")
            for button in message.get("buttons") or []:
                print(f"     [{button.get('title')}]")
