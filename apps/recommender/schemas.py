"""HTTP request and response models (FastAPI validates with them; the typed client returns them)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from apps.recommender.items import Item


class HistoryEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    ts: float | None = Field(default=None, description="when it was consumed (any increasing number)")
    weight: float = Field(default=1.0, gt=0)


class FiltersModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    category: str | list[str] | None = None
    available: bool | None = None
    exclude_seen: bool = True
    min_price: float | None = None
    max_price: float | None = None


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    history: list[str | HistoryEvent] = Field(default_factory=list, description="item ids, oldest first")
    query: str | None = None
    k: int = Field(default=10, description="how many items, 1..max_k (default max_k 100)")
    filters: FiltersModel = Field(default_factory=FiltersModel)


class RecommendedItem(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # read straight from the Recommendation dataclass

    id: str
    score: float
    explanation: str
    title: str = ""
    history_item: str | None = None
    query_words: list[str] = Field(default_factory=list)


class RecommendResponse(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    items: list[RecommendedItem]
    unknown_ids: list[str] = Field(default_factory=list)
    note: str | None = None


class UpsertRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[Item] = Field(min_length=1)


class DeleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[str] = Field(min_length=1)


class WriteResponse(BaseModel):
    seq: int = Field(description="the catalog change number that holds this write")
    ids: list[str]
    unknown_ids: list[str] = Field(default_factory=list)


class HealthResponse(BaseModel):
    status: str
    process: int = Field(description="id of the process that answered (with serve --workers N: one of the workers)")
    items: int
    indexed: int
    index_kind: str
    seq: int
    catalog_seq: int
    encoder: str
    ranker: str
    users_in_log: int
