"""Ranking processes behind one HTTP process: each call goes to whichever process is free.

Ranking is CPU work that mostly holds the GIL, so one process serves about one core. uvicorn's
own ``--workers`` share one listening socket and a keep-alive connection stays with the process
that accepted it; with a few long-lived client connections one process often takes them all
(8:0 and 7:1 measured with 8 connections on 2 cores) while the other core idles. Here one
process speaks HTTP and hands every call (``recommend``, ``similar``, writes, ``health``) to an
idle ranking process over a pipe, so the cores share the work whatever the connections do.

Each ranking process holds its own :class:`~apps.recommender.recommender.Recommender` on the
shared store and catches up with the others' writes at its next request (``Recommender.sync``),
so an item written through one process is served by all of them at once. A process that dies
fails only the call it was serving (503) and is replaced.

    pool = RankingPool(config, workers=2)
    await pool.start()
    result = await pool.call("recommend", ["sku-1"], None, 10, {})
    await pool.close()
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import pickle
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from apps.recommender.config import RecommenderConfig

log = logging.getLogger(__name__)

CALLS = frozenset({"recommend", "similar", "upsert_items", "delete_items", "health"})


class WorkerCrashedError(RuntimeError):
    """A ranking process died while serving a call (the call is lost; the process is replaced)."""


@dataclass(eq=False)  # hashed by identity: the pool keeps a set of them
class _Worker:
    number: int
    process: BaseProcess
    conn: Connection


def _serve(conn: Connection, config: RecommenderConfig, log_level: str) -> None:
    """A ranking process: load the store, then answer ``(method, args)`` messages until ``None`` or EOF."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(name)s [ranking %(process)d] %(message)s")
    from apps.recommender.recommender import Recommender

    rec = Recommender.load(config)
    try:
        conn.send(("ready", None))
        while True:
            try:
                message = conn.recv()
            except EOFError:  # the HTTP process is gone
                return
            if message is None:
                return
            method, args = message
            try:
                reply = (True, getattr(rec, method)(*args))
            except Exception as error:  # returned to the caller, which raises it there
                reply = (False, error)
            try:
                conn.send(reply)
            except (pickle.PicklingError, TypeError, AttributeError) as error:
                conn.send((False, RuntimeError(f"{method}: the reply could not be sent back: {error}")))
    finally:
        rec.close()


class RankingPool:
    """``workers`` ranking processes on one store; :meth:`call` runs a Recommender method on an idle one."""

    def __init__(self, config: RecommenderConfig, workers: int, log_level: str = "WARNING") -> None:
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers={workers!r}; expected an integer >= 1")
        self.config, self.workers, self.log_level = config, workers, log_level
        self._context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        self._idle: asyncio.Queue[_Worker] | None = None
        self._all: set[_Worker] = set()
        self._respawns: set[asyncio.Task] = set()
        self._closing = False

    async def start(self) -> None:
        """Start every process and wait until each has loaded the store (they load in parallel)."""
        self._idle = asyncio.Queue()
        started = await asyncio.gather(*(self._spawn(n) for n in range(self.workers)), return_exceptions=True)
        failed = [error for error in started if isinstance(error, BaseException)]
        for worker in started:
            if isinstance(worker, _Worker):
                self._idle.put_nowait(worker)
        if failed:
            await self.close()
            raise failed[0]
        log.info("%d ranking processes ready", self.workers)

    async def _spawn(self, number: int) -> _Worker:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(target=_serve, args=(theirs, self.config, self.log_level),
                                        name=f"ranking-{number}", daemon=True)
        process.start()
        theirs.close()
        worker = _Worker(number, process, ours)
        self._all.add(worker)
        try:
            await _readable(ours)
            ours.recv()  # ("ready", None)
        except (EOFError, OSError):
            self._all.discard(worker)
            process.join(5)
            raise RuntimeError(f"ranking process {number} exited with code {process.exitcode} while loading "
                               f"the store {self.config.store_dir} (its error is in the log above)") from None
        return worker

    async def call(self, method: str, *args: Any) -> Any:
        """``Recommender.<method>(*args)`` in an idle ranking process; its exceptions are raised here."""
        if method not in CALLS:
            raise ValueError(f"method={method!r}; expected one of {sorted(CALLS)}")
        if self._idle is None or self._closing:
            raise RuntimeError("the ranking pool is not running (start() it first)")
        worker = await self._idle.get()
        # shielded: a cancelled request (client gone) still waits for its reply before the process is reused
        ok, value = await asyncio.shield(asyncio.ensure_future(self._roundtrip(worker, method, args)))
        if ok:
            return value
        raise value

    async def _roundtrip(self, worker: _Worker, method: str, args: tuple) -> tuple[bool, Any]:
        try:
            worker.conn.send((method, args))
            await _readable(worker.conn)
            reply = worker.conn.recv()
        except (EOFError, OSError):
            self._replace(worker)
            return False, WorkerCrashedError(
                f"ranking process {worker.number} died while serving {method} (exit code "
                f"{worker.process.exitcode}); it is being restarted, retry the request")
        self._idle.put_nowait(worker)
        return reply

    def _replace(self, worker: _Worker) -> None:
        self._all.discard(worker)
        worker.conn.close()
        worker.process.join(1)
        if self._closing:
            return
        log.error("ranking process %d died (exit code %s); starting a new one", worker.number,
                  worker.process.exitcode)

        async def respawn() -> None:
            try:
                self._idle.put_nowait(await self._spawn(worker.number))
            except RuntimeError as error:
                log.error("%s", error)

        task = asyncio.ensure_future(respawn())
        self._respawns.add(task)
        task.add_done_callback(self._respawns.discard)

    async def close(self) -> None:
        """Ask every process to finish (its in-flight call first), then stop the stragglers."""
        self._closing = True
        for task in list(self._respawns):
            task.cancel()
        for worker in list(self._all):
            try:
                worker.conn.send(None)
            except OSError:
                pass
        loop = asyncio.get_running_loop()
        for worker in list(self._all):
            await loop.run_in_executor(None, worker.process.join, 10)
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(5)
            worker.conn.close()
        self._all.clear()


async def _readable(conn: Connection) -> None:
    """Wait, without a thread, until ``conn`` has data (or EOF) to read."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    fd = conn.fileno()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(fd)
