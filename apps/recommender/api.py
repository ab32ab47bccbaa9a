"""The HTTP API: a thin FastAPI shell over :class:`~apps.recommender.recommender.Recommender`.

Embedding and ranking are CPU work, so no handler runs it on the event loop, which stays free
to accept requests: a single-process service hands it to the thread pool
(``run_in_threadpool``), a multi-process one to an idle ranking process
(:class:`~apps.recommender.pool.RankingPool`). Bad input is a 422 with the reason (unknown
history ids are not an error: they come back in ``unknown_ids``); an unknown item in
``/similar`` is a 404; a ranking process that died mid-request is a 503.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from apps.recommender.filters import RequestError
from apps.recommender.items import ItemValidationError
from apps.recommender.pool import RankingPool, WorkerCrashedError
from apps.recommender.recommender import ItemNotFoundError, Recommendations, Recommender
from apps.recommender.schemas import (
    DeleteRequest,
    HealthResponse,
    RecommendRequest,
    RecommendResponse,
    UpsertRequest,
    WriteResponse,
)

log = logging.getLogger(__name__)


def _response(result: Recommendations) -> RecommendResponse:
    return RecommendResponse.model_validate(result)  # attribute by attribute, in pydantic's compiled core


class InProcess:
    """Calls on a Recommender of this process, in the thread pool (one process; tests)."""

    def __init__(self, recommender: Recommender) -> None:
        self.recommender = recommender

    async def call(self, method: str, *args: Any) -> Any:
        return await run_in_threadpool(getattr(self.recommender, method), *args)


def create_app(recommender: Recommender | None = None, factory: Callable[[], Recommender] | None = None,
               pool: RankingPool | None = None) -> FastAPI:
    """An app serving ``recommender``, one made by ``factory`` at start-up (and closed at shutdown), or the
    ranking processes of ``pool`` (started at start-up, stopped at shutdown)."""
    if sum(x is not None for x in (recommender, factory, pool)) != 1:
        raise ValueError("pass exactly one of recommender= (tests), factory= (one process) or pool= (processes)")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if factory is not None:
            app.state.backend = InProcess(await run_in_threadpool(factory))
        if pool is not None:
            await pool.start()
        try:
            yield
        finally:
            if factory is not None:
                await run_in_threadpool(app.state.backend.recommender.close)
            if pool is not None:
                await pool.close()

    app = FastAPI(title="textml recommender", version="1.0", lifespan=lifespan,
                  description="Text-based recommendations over a live catalog (FAISS + a learned ranker).")
    app.state.backend = InProcess(recommender) if recommender is not None else pool

    async def call(request: Request, method: str, *args: Any) -> Any:
        return await request.app.state.backend.call(method, *args)

    @app.exception_handler(RequestError)
    @app.exception_handler(ItemValidationError)
    async def bad_input(request: Request, error: ValueError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(error)})

    @app.exception_handler(WorkerCrashedError)
    async def crashed(request: Request, error: WorkerCrashedError) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(error)})

    @app.post("/recommend", response_model=RecommendResponse)
    async def recommend(body: RecommendRequest, request: Request) -> RecommendResponse:
        history = [h if isinstance(h, str) else h.model_dump() for h in body.history]
        result = await call(request, "recommend", history, body.query, body.k,
                                         body.filters.model_dump())
        return _response(result)

    @app.get("/similar/{item_id:path}", response_model=RecommendResponse)
    async def similar(item_id: str, request: Request, k: int = 10) -> RecommendResponse:
        try:
            result = await call(request, "similar", item_id, k)
        except ItemNotFoundError as error:
            raise HTTPException(status_code=404, detail=str(error)) from None
        return _response(result)

    @app.post("/items", response_model=WriteResponse)
    async def upsert(body: UpsertRequest, request: Request) -> WriteResponse:
        result = await call(request, "upsert_items", body.items, "request")
        return WriteResponse(seq=result.seq, ids=result.ids)

    @app.delete("/items", response_model=WriteResponse)
    async def delete(body: DeleteRequest, request: Request) -> WriteResponse:
        result = await call(request, "delete_items", body.ids)
        return WriteResponse(seq=result.seq, ids=result.ids, unknown_ids=result.unknown_ids)

    @app.delete("/items/{item_id:path}", response_model=WriteResponse)
    async def delete_one(item_id: str, request: Request) -> WriteResponse:
        result = await call(request, "delete_items", [item_id])
        if result.unknown_ids:
            raise HTTPException(status_code=404, detail=f"item {item_id!r} is not in the catalog")
        return WriteResponse(seq=result.seq, ids=result.ids)

    @app.get("/health", response_model=HealthResponse)
    async def health(request: Request) -> HealthResponse:
        return HealthResponse(status="ok", **await call(request, "health"))

    return app
