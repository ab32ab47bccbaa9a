"""A small typed client for the HTTP API (httpx); errors carry the server's status and reason."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from apps.recommender.schemas import (
    FiltersModel,
    HealthResponse,
    RecommendRequest,
    RecommendResponse,
    WriteResponse,
)


class RecommenderClientError(RuntimeError):
    """The server refused a request; ``status`` is the HTTP status, the message its reason."""

    def __init__(self, status: int, detail: Any) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"HTTP {status}: {detail}")


class RecommenderClient:
    """``RecommenderClient("http://127.0.0.1:8300").recommend(["sku-1"], k=5).items``."""

    def __init__(self, base_url: str, timeout: float = 10.0, transport: httpx.BaseTransport | None = None) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RecommenderClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        response = self._http.request(method, url, **kwargs)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text
            raise RecommenderClientError(response.status_code, detail)
        return response.json()

    def recommend(self, history: Sequence[str | Mapping[str, Any]] = (), query: str | None = None, k: int = 10,
                  filters: Mapping[str, Any] | None = None) -> RecommendResponse:
        body = RecommendRequest(history=list(history), query=query, k=k, filters=FiltersModel(**(filters or {})))
        return RecommendResponse.model_validate(self._call("POST", "/recommend", json=body.model_dump()))

    def similar(self, item_id: str, k: int = 10) -> RecommendResponse:
        return RecommendResponse.model_validate(self._call("GET", f"/similar/{item_id}", params={"k": k}))

    def upsert_items(self, items: Sequence[Mapping[str, Any]]) -> WriteResponse:
        return WriteResponse.model_validate(self._call("POST", "/items", json={"items": list(items)}))

    def delete_items(self, ids: Sequence[str]) -> WriteResponse:
        return WriteResponse.model_validate(self._call("DELETE", "/items", json={"ids": list(ids)}))

    def health(self) -> HealthResponse:
        return HealthResponse.model_validate(self._call("GET", "/health"))
