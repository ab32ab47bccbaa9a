"""The recommender's settings: one frozen config passed down, and the one place environment variables are read."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from apps.recommender.ranking import RankingConfig
from core.index import IndexConfig

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RecommenderConfig:
    """Where the catalog lives, which embedder, how to index, rank and diversify.

    ``embedder=None`` means the registry's production ``recommender-embedder`` if promoted,
    else all-MiniLM-L6-v2 (see :mod:`apps.recommender.encoders`); ``"hashing"`` is the
    model-free encoder. ``snapshot_every`` is how many catalog writes may pass before the
    index snapshot is rewritten (the catalog is durable at once; a crash replays the rest).
    """

    store_dir: Path = REPO_ROOT / "var" / "recommender"
    embedder: str | None = None
    device: str | None = None
    index: IndexConfig = field(default_factory=IndexConfig)
    ranking: RankingConfig = field(default_factory=RankingConfig)
    max_k: int = 100
    mmr_lambda: float = 0.85   # 1.0 turns diversity off
    mmr_pool: int = 5          # MMR re-orders the best k * mmr_pool candidates
    snapshot_every: int = 100  # the catalog is durable per write; a restart re-embeds at most this many items
    search_threads: int | None = 1  # FAISS and BLAS threads per request (None: leave the libraries' defaults)

    def __post_init__(self) -> None:
        if not isinstance(self.max_k, int) or self.max_k < 1:
            raise ValueError(f"max_k={self.max_k!r}; expected an integer >= 1")
        if not 0.0 <= self.mmr_lambda <= 1.0:
            raise ValueError(f"mmr_lambda={self.mmr_lambda!r}; expected 0 <= lambda <= 1 (1 turns MMR off)")
        if self.snapshot_every < 1:
            raise ValueError(f"snapshot_every={self.snapshot_every!r}; expected an integer >= 1")

    @property
    def catalog_path(self) -> Path:
        return Path(self.store_dir) / "catalog.sqlite3"

    @property
    def index_path(self) -> Path:
        return Path(self.store_dir) / "index"

    @property
    def ranker_path(self) -> Path:
        return Path(self.store_dir) / "ranker.json"

    @property
    def cold_ranker_path(self) -> Path:
        return Path(self.store_dir) / "ranker-cold.json"


def config_from_env(**overrides: object) -> RecommenderConfig:
    """``TEXTML_RECOMMENDER_DIR`` (store folder), ``TEXTML_RECOMMENDER_EMBEDDER`` (model),
    ``TEXTML_RECOMMENDER_DEVICE`` and ``TEXTML_RECOMMENDER_CATALOG_NEAR`` (0: catalog order is not
    arrival order, see :class:`~apps.recommender.ranking.RankingConfig`), then ``overrides``."""
    values: dict[str, object] = {}
    flag = os.environ.get("TEXTML_RECOMMENDER_CATALOG_NEAR", "").strip().lower()
    if flag:
        if flag not in {"0", "1", "true", "false"}:
            raise ValueError(f"TEXTML_RECOMMENDER_CATALOG_NEAR={flag!r}; expected 1 or 0 (true or false)")
        values["ranking"] = RankingConfig(catalog_near=flag in {"1", "true"})
    if os.environ.get("TEXTML_RECOMMENDER_DIR"):
        values["store_dir"] = Path(os.environ["TEXTML_RECOMMENDER_DIR"]).expanduser()
    if os.environ.get("TEXTML_RECOMMENDER_EMBEDDER"):
        values["embedder"] = os.environ["TEXTML_RECOMMENDER_EMBEDDER"]
    if os.environ.get("TEXTML_RECOMMENDER_DEVICE"):
        values["device"] = os.environ["TEXTML_RECOMMENDER_DEVICE"]
    values.update({k: v for k, v in overrides.items() if v is not None})
    return RecommenderConfig(**values)
