"""The ranking-process pool: real spawned processes on a small hashing-encoder store."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from apps.recommender.filters import RequestError
from apps.recommender.items import ItemValidationError
from apps.recommender.pool import RankingPool, WorkerCrashedError
from apps.recommender.recommender import ItemNotFoundError, Recommender

from .conftest import ITEMS, make_config

pytestmark = pytest.mark.slow  # each test spawns Python processes


@pytest.fixture
def config(tmp_path, encoder):
    config = make_config(tmp_path, mmr_lambda=1.0)
    seeded = Recommender.load(config, encoder=encoder)
    seeded.upsert_items(ITEMS)
    seeded.close()
    return config


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 120))


def test_calls_run_in_the_processes_and_their_errors_come_back_whole(config) -> None:
    async def scenario():
        pool = RankingPool(config, workers=2)
        await pool.start()
        try:
            result = await pool.call("recommend", ["knife"], None, 1, {"category": "kitchen"})
            assert [item.id for item in result.items] == ["pan"]
            with pytest.raises(ItemNotFoundError, match="ghost"):
                await pool.call("similar", "ghost", 3)
            with pytest.raises(RequestError, match="k"):
                await pool.call("recommend", [], None, 0, {})
            with pytest.raises(ItemValidationError) as bad:
                await pool.call("upsert_items", [{"id": "x", "title": ""}], "request")
            assert bad.value.problems and bad.value.source == "request"
            with pytest.raises(ValueError, match="fit_ranker"):
                await pool.call("fit_ranker")
            # a write through one process is served by the other at its next call
            await pool.call("upsert_items", [{"id": "kayak", "title": "Sea kayak", "text": "kayak paddle"}])
            found = await asyncio.gather(*(pool.call("recommend", [], "kayak paddle", 1, {}) for _ in range(6)))
            assert {r.items[0].id for r in found} == {"kayak"}
        finally:
            await pool.close()

    run(scenario())


def test_a_process_that_dies_fails_its_call_and_is_replaced(config) -> None:
    async def scenario():
        pool = RankingPool(config, workers=1)
        await pool.start()
        try:
            (worker,) = pool._all
            os.kill(worker.process.pid, signal.SIGKILL)
            worker.process.join(10)
            with pytest.raises(WorkerCrashedError, match="restarted"):
                await pool.call("health")
            assert (await pool.call("health"))["items"] == len(ITEMS)  # waits for the replacement
            assert len(pool._all) == 1 and next(iter(pool._all)).process.pid != worker.process.pid
        finally:
            await pool.close()

    run(scenario())


def test_a_cancelled_call_does_not_leave_its_reply_for_the_next_caller(config) -> None:
    async def scenario():
        pool = RankingPool(config, workers=1)
        await pool.start()
        try:
            first = asyncio.ensure_future(pool.call("recommend", ["tent"], None, 2, {}))
            await asyncio.sleep(0)
            first.cancel()
            health = await pool.call("health")
            assert isinstance(health, dict) and health["items"] == len(ITEMS)
        finally:
            await pool.close()

    run(scenario())


def test_a_store_that_cannot_load_stops_start_with_the_reason(tmp_path) -> None:
    from apps.recommender.config import RecommenderConfig

    not_a_folder = tmp_path / "store"
    not_a_folder.write_text("a file where the store folder should be")
    config = RecommenderConfig(store_dir=not_a_folder, embedder="hashing")

    async def scenario():
        await RankingPool(config, workers=2).start()

    with pytest.raises(RuntimeError, match="exited with code"):
        run(scenario())
