"""The HTTP API: a thin FastAPI shell over :class:`~apps.recommender.recommender.Recommender`.

Embedding and ranking are CPU work, so every handler hands it to the thread pool
(``run_in_threadpool``) and the event loop stays free to accept requests. Bad input is a
422 with the reason (unknown history ids are not an error: they come back in
``unknown_ids``); an unknown item in ``/similar`` is a 404.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from apps.recommender.filters import RequestError
from apps.recommender.items import ItemValidationError
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


def create_app(recommender: Recommender | None = None,
               factory: Callable[[], Recommender] | None = None, rank_on_loop: bool = False) -> FastAPI:
    """An app serving ``recommender``, or one made by ``factory`` at start-up (and closed at shutdown).

    ``rank_on_loop`` is for a worker process of ``serve --workers N``, which stands for one core: there a
    request that needs no model (a history, no query text; ``/similar``) is ranked on the event loop, as
    the connections' requests would queue for that core anyway, without the thread hand-off and GIL
    switches (measured at 8 connections on 2 cores: 500 against 465 requests/s, p99 26 against 31 ms).
    Text to embed, writes and a catch-up with other workers' writes still go to the thread pool.
    """
    if (recommender is None) == (factory is None):
        raise ValueError("pass exactly one of recommender= (tests) or factory= (the service)")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if factory is not None:
            app.state.recommender = await run_in_threadpool(factory)
        try:
            yield
        finally:
            if factory is not None:
                await run_in_threadpool(app.state.recommender.close)

    app = FastAPI(title="textml recommender", version="1.0", lifespan=lifespan,
                  description="Text-based recommendations over a live catalog (FAISS + a learned ranker).")
    app.state.recommender = recommender

    def rec(request: Request) -> Recommender:
        return request.app.state.recommender

    async def rank(request: Request, method: Callable[..., Recommendations], *args: Any,
                   needs_model: bool) -> Recommendations:
        if rank_on_loop and not needs_model:
            recommender = rec(request)
            if not recommender.in_sync():  # items written by another worker are embedded here first
                await run_in_threadpool(recommender.sync)
            return method(*args)
        return await run_in_threadpool(method, *args)

    @app.exception_handler(RequestError)
    @app.exception_handler(ItemValidationError)
    async def bad_input(request: Request, error: ValueError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(error)})

    @app.post("/recommend", response_model=RecommendResponse)
    async def recommend(body: RecommendRequest, request: Request) -> RecommendResponse:
        history = [h if isinstance(h, str) else h.model_dump() for h in body.history]
        result = await rank(request, rec(request).recommend, history, body.query, body.k, body.filters.model_dump(),
                            needs_model=bool(body.query and body.query.strip()))
        return _response(result)

    @app.get("/similar/{item_id:path}", response_model=RecommendResponse)
    async def similar(item_id: str, request: Request, k: int = 10) -> RecommendResponse:
        try:
            result = await rank(request, rec(request).similar, item_id, k, needs_model=False)
        except ItemNotFoundError as error:
            raise HTTPException(status_code=404, detail=str(error)) from None
        return _response(result)

    @app.post("/items", response_model=WriteResponse)
    async def upsert(body: UpsertRequest, request: Request) -> WriteResponse:
        result = await run_in_threadpool(rec(request).upsert_items, body.items, "request")
        return WriteResponse(seq=result.seq, ids=result.ids)

    @app.delete("/items", response_model=WriteResponse)
    async def delete(body: DeleteRequest, request: Request) -> WriteResponse:
        result = await run_in_threadpool(rec(request).delete_items, body.ids)
        return WriteResponse(seq=result.seq, ids=result.ids, unknown_ids=result.unknown_ids)

    @app.delete("/items/{item_id:path}", response_model=WriteResponse)
    async def delete_one(item_id: str, request: Request) -> WriteResponse:
        result = await run_in_threadpool(rec(request).delete_items, [item_id])
        if result.unknown_ids:
            raise HTTPException(status_code=404, detail=f"item {item_id!r} is not in the catalog")
        return WriteResponse(seq=result.seq, ids=result.ids)

    @app.get("/health", response_model=HealthResponse)
    async def health(request: Request) -> HealthResponse:
        return HealthResponse(status="ok", process=os.getpid(), **await run_in_threadpool(rec(request).health))

    return app
