"""The recommender's settings: one frozen config passed down, and the one place environment variables are read."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from apps.recommender.ranking import RankingConfig
from core.index import IndexConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RATE_PER_MINUTE = 6000  # per API key and worker process: 100 requests/s, far above one user's needs


@dataclass(frozen=True)
class ApiKeysConfig:
    """Who may call the HTTP API, and how often.

    ``keys_file`` holds the API keys, hashed (see :mod:`apps.recommender.keys`); without it every
    request but ``GET /health`` is refused. ``rate_per_minute`` is the limit for a key whose record
    sets none. The limit is counted in each serving process: with ``serve --workers N`` a client
    spreading its connections over the workers may reach up to N times it.
    """

    keys_file: Path = REPO_ROOT / "var" / "recommender" / "api_keys.json"
    rate_per_minute: int = DEFAULT_RATE_PER_MINUTE

    def __post_init__(self) -> None:
        if isinstance(self.rate_per_minute, bool) or not isinstance(self.rate_per_minute, int) \
                or self.rate_per_minute < 1:
            raise ValueError(f"rate_per_minute={self.rate_per_minute!r}; expected an integer >= 1 "
                             "(requests per minute and API key)")


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
    api_keys: ApiKeysConfig = field(default_factory=ApiKeysConfig)  # the HTTP API's keys and rate limit

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


def api_keys_from_env(keys_file: Path | None = None) -> ApiKeysConfig:
    """``TEXTML_RECOMMENDER_API_KEYS_FILE`` (default ``$TEXTML_VAR_DIR/recommender/api_keys.json``,
    ``TEXTML_VAR_DIR`` defaulting to ``var/``) and ``TEXTML_RECOMMENDER_RATE_PER_MINUTE`` (default
    6000); ``keys_file`` (the ``--keys-file`` flag) wins over the environment."""
    if keys_file is None and os.environ.get("TEXTML_RECOMMENDER_API_KEYS_FILE"):
        keys_file = Path(os.environ["TEXTML_RECOMMENDER_API_KEYS_FILE"])
    if keys_file is None:
        keys_file = Path(os.environ.get("TEXTML_VAR_DIR") or REPO_ROOT / "var") / "recommender" / "api_keys.json"
    rate = os.environ.get("TEXTML_RECOMMENDER_RATE_PER_MINUTE", "").strip()
    if rate and (not rate.isdigit() or int(rate) < 1):
        raise ValueError(f"TEXTML_RECOMMENDER_RATE_PER_MINUTE={rate!r}; expected a whole number >= 1 of requests "
                         "per minute and API key, such as 6000")
    return ApiKeysConfig(keys_file=Path(keys_file).expanduser(),
                         rate_per_minute=int(rate) if rate else DEFAULT_RATE_PER_MINUTE)


def config_from_env(**overrides: object) -> RecommenderConfig:
    """``TEXTML_RECOMMENDER_DIR`` (store folder), ``TEXTML_RECOMMENDER_EMBEDDER`` (model),
    ``TEXTML_RECOMMENDER_DEVICE``, the API keys' settings
    (:func:`api_keys_from_env`), then ``overrides``."""
    values: dict[str, object] = {"api_keys": api_keys_from_env()}
    if os.environ.get("TEXTML_RECOMMENDER_DIR"):
        values["store_dir"] = Path(os.environ["TEXTML_RECOMMENDER_DIR"]).expanduser()
    if os.environ.get("TEXTML_RECOMMENDER_EMBEDDER"):
        values["embedder"] = os.environ["TEXTML_RECOMMENDER_EMBEDDER"]
    if os.environ.get("TEXTML_RECOMMENDER_DEVICE"):
        values["device"] = os.environ["TEXTML_RECOMMENDER_DEVICE"]
    values.update({k: v for k, v in overrides.items() if v is not None})
    return RecommenderConfig(**values)
