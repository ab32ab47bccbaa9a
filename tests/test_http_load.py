"""The benchmarks' lean HTTP load generator against a real local server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from benchmarks.http_load import LoadError, run_load


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the load generator expects
    seen: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Echo.seen.append(body)
        status = 500 if body.get("fail") else 200
        payload = json.dumps({"echo": body}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Echo.seen = []
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def test_every_body_is_posted_once_and_timed(server: int) -> None:
    bodies = [{"n": n} for n in range(25)]
    latencies, seconds = run_load("127.0.0.1", server, "/x", bodies, concurrency=4)
    assert sorted(b["n"] for b in Echo.seen) == list(range(25))
    assert len(latencies) == 25 and all(0 < t <= seconds for t in latencies)


def test_a_failed_request_stops_the_run_with_its_status(server: int) -> None:
    with pytest.raises(LoadError, match="status 500"):
        run_load("127.0.0.1", server, "/x", [{"n": 1}, {"fail": True}], concurrency=1)
