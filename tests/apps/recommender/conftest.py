"""Small real fixtures: the model-free hashing encoder and a toy catalog whose right answers are known."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn

from apps.recommender.config import ApiKeysConfig, RecommenderConfig
from apps.recommender.encoders import HashingEncoder
from apps.recommender.keys import KeyStore
from apps.recommender.recommender import Recommender

DEMO = Path(__file__).resolve().parents[3] / "apps" / "recommender" / "demo_data"

ITEMS = [
    {"id": "tent", "title": "Backpacking tent", "category": "outdoor", "tags": ["camping", "tent"],
     "text": "two person camping tent"},
    {"id": "bag", "title": "Down sleeping bag", "category": "outdoor", "tags": ["camping", "sleeping"],
     "text": "warm sleeping bag for camping"},
    {"id": "stove", "title": "Camp stove", "category": "outdoor", "tags": ["camping", "cooking"],
     "text": "gas stove for camping trips", "available": False},
    {"id": "knife", "title": "Chef knife", "category": "kitchen", "tags": ["cooking", "knife"],
     "text": "steel kitchen knife"},
    {"id": "pan", "title": "Cast iron pan", "category": "kitchen", "tags": ["cooking", "pan"],
     "text": "cast iron skillet for the kitchen"},
    {"id": "novel", "title": "Desert mystery novel", "category": "books", "tags": ["fiction"],
     "text": "a mystery story"},
]


def make_config(tmp_path: Path, **overrides) -> RecommenderConfig:
    return RecommenderConfig(store_dir=tmp_path / "store", embedder="hashing", **overrides)


@pytest.fixture
def encoder() -> HashingEncoder:
    return HashingEncoder(256)


@pytest.fixture
def rec(tmp_path: Path, encoder: HashingEncoder) -> Recommender:
    recommender = Recommender.load(make_config(tmp_path, mmr_lambda=1.0), encoder=encoder)
    recommender.upsert_items(ITEMS)
    yield recommender
    recommender.close()


@pytest.fixture
def api_keys(tmp_path: Path) -> ApiKeysConfig:
    """A keys file of this test's own (none of var/), empty until a test creates a key."""
    return ApiKeysConfig(keys_file=tmp_path / "keys" / "api_keys.json")


@pytest.fixture
def api_key(api_keys: ApiKeysConfig) -> str:
    """A valid key in ``api_keys``, at the default rate."""
    return KeyStore(api_keys.keys_file).create("tests")[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def live_server(app) -> Iterator[str]:
    """``app`` served by a real uvicorn on a free loopback port, in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
