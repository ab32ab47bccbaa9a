"""``serve --workers N``: one process accepts connections and hands each to the least-busy worker process.

Ranking is CPU work that mostly holds the GIL, so a process serves about one core. uvicorn's own
``--workers`` share one listening socket and each process accepts whatever it can: with a few
long-lived keep-alive connections one process often took them all (8:0 and 7:1 measured with 8
connections on 2 cores) while the other core idled. Forwarding each request from one HTTP
process to ranking processes balances per request, but the hop costs CPU: with 8 connections
on 2 cores it reached 377 requests/s (p99 37 ms) where two processes serving 4 connections each
reached 480 (p99 30 ms). So here the parent only accepts, and passes each new connection's file
descriptor (``SCM_RIGHTS`` over a Unix socket) to the worker serving the fewest connections;
the worker serves it with uvicorn's own HTTP protocol and the FastAPI app, as if it had
accepted it, and reports back when it closes.

Each worker holds its own :class:`~apps.recommender.recommender.Recommender` on the shared
store and catches up with the others' writes at its next request (``Recommender.sync``). A
worker that dies drops only its own connections and is replaced.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import selectors
import signal
import socket
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess

from apps.recommender.config import RecommenderConfig

log = logging.getLogger(__name__)

READY, CLOSED, CONNECTION = b"r", b"x", b"c"  # worker -> parent, worker -> parent, parent -> worker
RESPAWN_DELAY_S = 1.0


@dataclass(eq=False)
class _Worker:
    number: int
    process: BaseProcess
    channel: socket.socket  # SOCK_SEQPACKET: one message per connection handed over or closed
    ready: bool = False
    connections: int = 0


class ConnectionHandoff:
    """Listen on ``host:port`` and run ``workers`` worker processes on the store of ``config``."""

    def __init__(self, config: RecommenderConfig, workers: int, host: str, port: int,
                 log_level: str = "INFO") -> None:
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers={workers!r}; expected an integer >= 1")
        self.config, self.workers, self.host, self.port = config, workers, host, port
        self.log_level = log_level.upper()
        self._context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        self._selector = selectors.DefaultSelector()
        self._pool: list[_Worker] = []
        self._spawned_at: dict[int, float] = {}  # worker number -> when it was last started
        self._turn = 0
        self._stopping = False

    def serve_forever(self) -> int:
        """Accept and hand over connections until SIGTERM/SIGINT; returns the exit status."""
        listener = socket.create_server((self.host, self.port), backlog=2048)
        listener.setblocking(False)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop)
        try:
            for number in range(self.workers):
                self._spawn(number)
            if not self._wait_ready():
                return 3
            log.info("serving on http://%s:%d with %d worker processes", self.host, self.port, self.workers)
            self._selector.register(listener, selectors.EVENT_READ, None)
            while not self._stopping:
                for key, _ in self._selector.select(timeout=1.0):
                    if key.data is None:
                        self._accept(listener)
                    elif not self._read(key.data):
                        self._lost(key.data)
                self._replace_dead()
            return 0
        finally:
            listener.close()
            self._shutdown()

    def _stop(self, signum: int, frame: object) -> None:
        self._stopping = True

    # ------------------------------------------------------------------ workers
    def _spawn(self, number: int) -> _Worker:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        process = self._context.Process(target=_work, args=(theirs, self.config, self.log_level),
                                        name=f"recommender-worker-{number}", daemon=True)
        process.start()
        theirs.close()
        ours.setblocking(False)
        worker = _Worker(number, process, ours)
        self._spawned_at[number] = time.monotonic()
        self._pool.append(worker)
        self._selector.register(ours, selectors.EVENT_READ, worker)
        return worker

    def _wait_ready(self) -> bool:
        """Until every first worker has loaded the store; False (and the reason logged) when one could not."""
        while not all(w.ready for w in self._pool):
            if self._stopping:
                return False
            for key, _ in self._selector.select(timeout=0.5):
                worker = key.data
                if not self._read(worker):
                    worker.process.join(5)
                    log.error("worker %d exited with code %s while loading the store %s (its error is above)",
                              worker.number, worker.process.exitcode, self.config.store_dir)
                    return False
        return True

    def _read(self, worker: _Worker) -> bool:
        """Take the worker's messages; False when it is gone (its channel closed)."""
        while True:
            try:
                message = worker.channel.recv(16)
            except BlockingIOError:
                return True
            except OSError:
                message = b""
            if message == READY:
                worker.ready = True
            elif message == CLOSED:
                worker.connections = max(0, worker.connections - 1)
            elif not message:
                return False

    def _lost(self, worker: _Worker) -> None:
        self._forget(worker)
        if not self._stopping:
            log.error("worker %d exited (code %s); a new one starts", worker.number, worker.process.exitcode)

    def _forget(self, worker: _Worker) -> None:
        if worker in self._pool:
            self._pool.remove(worker)
            self._selector.unregister(worker.channel)
            worker.channel.close()
            worker.process.join(1)

    def _replace_dead(self) -> None:
        for worker in [w for w in self._pool if not w.process.is_alive()]:
            self._forget(worker)
        alive = {w.number for w in self._pool}
        for number in range(self.workers):
            if number not in alive and time.monotonic() - self._spawned_at.get(number, 0.0) >= RESPAWN_DELAY_S:
                self._spawn(number)  # (a worker that cannot start is retried once a second, each failure logged)

    # ------------------------------------------------------------------ connections
    def _accept(self, listener: socket.socket) -> None:
        ready = [w for w in self._pool if w.ready]
        if not ready:  # every worker is restarting: connections wait in the backlog
            time.sleep(0.05)
            return
        while True:
            try:
                connection, _ = listener.accept()
            except BlockingIOError:
                return
            self._turn += 1
            worker = min(ready, key=lambda w: (w.connections, (w.number - self._turn) % self.workers))
            try:
                socket.send_fds(worker.channel, [CONNECTION], [connection.fileno()])
                worker.connections += 1
            except OSError as error:  # the worker died this instant: the client retries
                log.warning("could not hand a connection to worker %d: %s", worker.number, error)
            finally:
                connection.close()

    def _shutdown(self) -> None:
        for worker in self._pool:
            if worker.process.is_alive():
                worker.process.terminate()  # SIGTERM: uvicorn finishes its requests, then the lifespan closes
        for worker in self._pool:
            worker.process.join(15)
            if worker.process.is_alive():
                worker.process.kill()
            worker.channel.close()
        self._pool.clear()


# ---------------------------------------------------------------------- worker process
def _work(channel: socket.socket, config: RecommenderConfig, log_level: str) -> None:
    """A worker: the FastAPI app in uvicorn, serving the connections the parent hands over."""
    import uvicorn
    from uvicorn._compat import asyncio_run

    from apps.recommender.api import create_app
    from apps.recommender.recommender import Recommender

    logging.basicConfig(level=log_level, format="%(asctime)s %(name)s [worker %(process)d] %(message)s")
    app = create_app(factory=lambda: Recommender.load(config), rank_on_loop=True, api_keys=config.api_keys)
    uconfig = uvicorn.Config(app, log_level=log_level.lower(), lifespan="on")
    server = uvicorn.Server(uconfig)
    asyncio_run(_serve(server, uconfig, channel), loop_factory=uconfig.get_loop_factory())


async def _serve(server, uconfig, channel: socket.socket) -> None:  # noqa: ANN001 (uvicorn's types)
    serving = asyncio.ensure_future(server.serve(sockets=[]))  # no listening socket of its own
    while not server.started:
        if serving.done():  # the app's start-up failed (uvicorn logged why); exit with its status
            await serving
            return
        await asyncio.sleep(0.02)
    loop = asyncio.get_running_loop()
    protocol = _reporting_closes(uconfig.http_protocol_class, channel)

    def make_protocol() -> asyncio.Protocol:
        return protocol(config=uconfig, server_state=server.server_state, app_state=server.lifespan.state,
                        _loop=loop)

    def receive() -> None:
        while True:
            try:
                message, fds, _, _ = socket.recv_fds(channel, 16, 4)
            except BlockingIOError:
                return
            if not message:  # the parent is gone: finish what runs, then stop
                loop.remove_reader(channel.fileno())
                server.should_exit = True
                return
            for fd in fds:
                loop.create_task(loop.connect_accepted_socket(make_protocol, sock=socket.socket(fileno=fd)))

    channel.setblocking(False)
    loop.add_reader(channel.fileno(), receive)
    channel.send(READY)
    await serving


def _reporting_closes(base: type, channel: socket.socket) -> type:
    """uvicorn's HTTP protocol class, telling the parent when a connection closes (for least-busy routing)."""

    class Reporting(base):
        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            try:
                channel.send(CLOSED)
            except OSError:
                pass

    return Reporting
