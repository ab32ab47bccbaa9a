"""The HTTP API: a thin FastAPI shell over :class:`~apps.recommender.recommender.Recommender`.

Embedding and ranking are CPU work, so every handler hands it to the thread pool
(``run_in_threadpool``) and the event loop stays free to accept requests. Bad input is a
422 with the reason (unknown history ids are not an error: they come back in
``unknown_ids``); an unknown item in ``/similar`` is a 404.

Every route but ``GET /health`` needs an API key in the ``X-API-Key`` header (401 without a valid
one, 429 with ``Retry-After`` over the key's rate; see :mod:`apps.recommender.auth`). ``/docs`` and
``/openapi.json`` stay open: they describe the API and hold no data, and the docs page's
"Authorize" button takes a key to try the routes with.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from apps.recommender.auth import ApiKeyGuard
from apps.recommender.config import ApiKeysConfig
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


def create_app(recommender: Recommender | None = None, factory: Callable[[], Recommender] | None = None,
               rank_on_loop: bool = False, api_keys: ApiKeysConfig | None = None) -> FastAPI:
    """An app serving ``recommender``, or one made by ``factory`` at start-up (and closed at shutdown).

    ``api_keys`` says where the keys are and the default rate per key (default: ``var/recommender/
    api_keys.json``, 6000 per minute); with no keys there, every route but ``/health`` answers 401.

    ``rank_on_loop`` is for a worker process of ``serve --workers N``, which stands for one core: there a
    request that needs no model (a history, no query text; ``/similar``) is ranked on the event loop, as
    the connections' requests would queue for that core anyway, without the thread hand-off and GIL
    switches (measured at 8 connections on 2 cores: 500 against 465 requests/s, p99 26 against 31 ms).
    Text to embed, writes and a catch-up with other workers' writes still go to the thread pool.
    """
    if (recommender is None) == (factory is None):
        raise ValueError("pass exactly one of recommender= (tests) or factory= (the service)")
    guard = ApiKeyGuard(api_keys or ApiKeysConfig())
    keyed = [Depends(guard)]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        guard.start()
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

    @app.post("/recommend", response_model=RecommendResponse, dependencies=keyed)
    async def recommend(body: RecommendRequest, request: Request) -> RecommendResponse:
        history = [h if isinstance(h, str) else h.model_dump() for h in body.history]
        result = await rank(request, rec(request).recommend, history, body.query, body.k, body.filters.model_dump(),
                            needs_model=bool(body.query and body.query.strip()))
        return _response(result)

    @app.get("/similar/{item_id:path}", response_model=RecommendResponse, dependencies=keyed)
    async def similar(item_id: str, request: Request, k: int = 10) -> RecommendResponse:
        try:
            result = await rank(request, rec(request).similar, item_id, k, needs_model=False)
        except ItemNotFoundError as error:
            raise HTTPException(status_code=404, detail=str(error)) from None
        return _response(result)

    @app.post("/items", response_model=WriteResponse, dependencies=keyed)
    async def upsert(body: UpsertRequest, request: Request) -> WriteResponse:
        result = await run_in_threadpool(rec(request).upsert_items, body.items, "request")
        return WriteResponse(seq=result.seq, ids=result.ids)

    @app.delete("/items", response_model=WriteResponse, dependencies=keyed)
    async def delete(body: DeleteRequest, request: Request) -> WriteResponse:
        result = await run_in_threadpool(rec(request).delete_items, body.ids)
        return WriteResponse(seq=result.seq, ids=result.ids, unknown_ids=result.unknown_ids)

    @app.delete("/items/{item_id:path}", response_model=WriteResponse, dependencies=keyed)
    async def delete_one(item_id: str, request: Request) -> WriteResponse:
        result = await run_in_threadpool(rec(request).delete_items, [item_id])
        if result.unknown_ids:
            raise HTTPException(status_code=404, detail=f"item {item_id!r} is not in the catalog")
        return WriteResponse(seq=result.seq, ids=result.ids)

    @app.get("/health", response_model=HealthResponse)  # open: the stack's and load balancers' liveness probe
    async def health(request: Request) -> HealthResponse:
        return HealthResponse(status="ok", process=os.getpid(), **await run_in_threadpool(rec(request).health))

    return app
