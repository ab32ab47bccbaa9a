"""A small typed client for the HTTP API (httpx); errors carry the server's status and reason.

The client sends ``api_key`` in the ``X-API-Key`` header; it does not read the environment (a
library takes its settings as arguments: a CLI or a script may read a key from where it likes).
"""

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
    """The server refused a request; ``status`` is the HTTP status (401: no valid key, 429: over the key's
    rate), the message its reason; ``retry_after`` the seconds the server asked to wait (429), else None."""

    def __init__(self, status: int, detail: Any, retry_after: int | None = None) -> None:
        self.status = status
        self.detail = detail
        self.retry_after = retry_after
        super().__init__(f"HTTP {status}: {detail}" + (f" (retry after {retry_after} s)" if retry_after else ""))


class RecommenderClient:
    """``RecommenderClient("http://127.0.0.1:8300", api_key=key).recommend(["sku-1"], k=5).items``.

    ``api_key`` is sent in the ``X-API-Key`` header (every route but ``health`` needs one).
    """

    def __init__(self, base_url: str, timeout: float = 10.0, transport: httpx.BaseTransport | None = None, *,
                 api_key: str | None = None) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self._http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport, headers=headers)

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
            retry_after = response.headers.get("Retry-After", "")
            raise RecommenderClientError(response.status_code, detail,
                                         int(retry_after) if retry_after.isdigit() else None)
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
