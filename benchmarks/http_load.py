"""A lean closed-loop HTTP/1.1 load generator, for latency figures on a machine the server shares.

A general-purpose client (httpx) spends about as much CPU per request as a fast handler does, and
on a 2-core machine that CPU is taken from the server being measured. Like ``wrk``, this client
sends pre-encoded requests over keep-alive connections from one asyncio loop and parses only the
status line and ``Content-Length``, so nearly all the measured time is the server's.

    latencies, seconds = run_load("127.0.0.1", 8000, "/recommend", bodies, concurrency=8,
                                  headers={"X-API-Key": key})

Each of ``concurrency`` connections sends its next request as soon as the previous response is in
(closed loop); a latency is from the first byte written to the last byte of the response read.
A response other than 200 raises :class:`LoadError` naming the status and the body's start.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence


class LoadError(RuntimeError):
    """The server answered a load request with something other than 200 OK."""


def encode_post(host: str, port: int, path: str, body: object, headers: Mapping[str, str] | None = None) -> bytes:
    """One keep-alive ``POST path`` with a JSON body and any extra ``headers``, ready to write to the socket."""
    payload = json.dumps(body, separators=(",", ":")).encode()
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(payload)}\r\nConnection: keep-alive\r\n\r\n")
    return head.encode() + payload


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
            break
    else:
        raise LoadError(f"response without Content-Length (status {status}): chunked bodies are not supported")
    body = await reader.readexactly(length) if length else b""
    return status, body


async def _connection(host: str, port: int, requests: Sequence[bytes], latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for request in requests:
            started = time.perf_counter()
            writer.write(request)
            status, body = await _read_response(reader)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                raise LoadError(f"status {status} from the server: {body[:300]!r}")
    finally:
        writer.close()


async def _run(host: str, port: int, requests: Sequence[bytes], concurrency: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    started = time.perf_counter()
    await asyncio.gather(*(_connection(host, port, requests[i::concurrency], latencies)
                           for i in range(concurrency)))
    return latencies, time.perf_counter() - started


def run_load(host: str, port: int, path: str, bodies: Sequence[object], concurrency: int = 8,
             headers: Mapping[str, str] | None = None) -> tuple[list[float], float]:
    """POST each of ``bodies`` (JSON) to ``path`` over ``concurrency`` connections, with ``headers``
    (such as ``{"X-API-Key": key}``) on every request.

    Returns the per-request latencies in seconds and the wall time of the whole run.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency={concurrency!r}; expected an integer >= 1")
    requests = [encode_post(host, port, path, body, headers) for body in bodies]
    return asyncio.run(_run(host, port, requests, concurrency))
