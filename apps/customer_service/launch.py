"""Start, watch and stop the bot's two servers as subprocesses (tests, benchmark, demo).

Rasa is ready when its agent is loaded: it logs "Rasa server is up and running" at that moment,
but in Rasa 3.6 under Sanic 21 that logger is disabled by Sanic's logging set-up, so the line may
never reach the log. ``GET /status`` answers 409 until the agent is loaded and 200 after, the
same moment, so :func:`rasa_ready` accepts either signal. An open port is not enough: Rasa
listens long before the model is loaded. ``/status`` is part of Rasa's HTTP API, so it needs the
API token; Rasa 3.6 takes it only as the ``token`` query parameter (``Authorization: Bearer`` is
for JWTs). It checks the token before the agent: a wrong token gets 401 at once, which
:func:`rasa_ready` reports instead of waiting. ``GET /`` ("Hello from Rasa") needs no token: an
outside health check can use it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from apps.customer_service.rasa_project import UP_AND_RUNNING
from apps.customer_service.settings import REPO_ROOT


class ServiceStartError(RuntimeError):
    """A server exited or did not become ready in time; the message carries its log's tail."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_service(command: str, log: Path, env: dict[str, str]) -> subprocess.Popen:
    """``python -m apps.customer_service <command>`` in its own session, output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as handle:
        return subprocess.Popen([sys.executable, "-m", "apps.customer_service", command], cwd=REPO_ROOT, env=env,
                                stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def stop_service(process: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until(ready: Callable[[], bool], process: subprocess.Popen, log: Path, what: str,
               timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceStartError(f"{what} exited with {process.returncode}; log {log}:\n"
                                    f"{log.read_text(errors='replace')[-3000:]}")
        if ready():
            return
        time.sleep(1)
    raise ServiceStartError(f"{what} not ready after {timeout:.0f} s; log {log}:\n"
                            f"{log.read_text(errors='replace')[-3000:]}")


def rasa_ready(url: str, log: Path, token: str) -> bool:
    """Whether the Rasa server at ``url`` has loaded its agent (``token``: its API token).

    Raises :class:`ServiceStartError` when the server refuses the token (another server, another token).
    """
    if log.is_file() and UP_AND_RUNNING in log.read_text(errors="replace"):
        return True
    try:
        status = httpx.get(f"{url}/status", params={"token": token}, timeout=2).status_code
    except httpx.HTTPError:
        return False
    if status in (401, 403):
        raise ServiceStartError(f"the Rasa server at {url} refuses the API token (HTTP {status}): it runs with "
                                "another CS_RASA_TOKEN or state folder (<state>/secrets/rasa_token)")
    return status == 200


def actions_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
