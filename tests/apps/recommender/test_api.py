import threading
import time

import pytest
import uvicorn
from fastapi.testclient import TestClient

from apps.recommender.api import create_app
from apps.recommender.client import RecommenderClient, RecommenderClientError
from apps.recommender.config import ApiKeysConfig
from apps.recommender.recommender import Recommender

from .conftest import free_port, live_server


@pytest.fixture
def client(rec: Recommender, api_keys: ApiKeysConfig, api_key: str) -> TestClient:
    with TestClient(create_app(recommender=rec, api_keys=api_keys), headers={"X-API-Key": api_key}) as test_client:
        yield test_client


def test_recommend_contract(client: TestClient) -> None:
    response = client.post("/recommend", json={"history": ["knife", "ghost"], "query": None, "k": 2,
                                               "filters": {"category": "kitchen"}})
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= {"items", "unknown_ids"} and body["unknown_ids"] == ["ghost"]
    assert [item["id"] for item in body["items"]] == ["pan"]
    assert set(body["items"][0]) >= {"id", "score", "explanation"}


def test_history_events_with_timestamps(client: TestClient) -> None:
    response = client.post("/recommend", json={"history": [{"id": "knife", "ts": 3}, "tent"], "k": 1})
    assert response.status_code == 200 and len(response.json()["items"]) == 1


def test_empty_request_gives_popular_items_with_a_note(client: TestClient) -> None:
    body = client.post("/recommend", json={"history": [], "k": 3}).json()
    assert len(body["items"]) == 3 and "popular" in body["note"]


@pytest.mark.parametrize("k", [0, 1000])
def test_k_out_of_range_is_422_with_the_reason(client: TestClient, k: int) -> None:
    response = client.post("/recommend", json={"history": ["tent"], "k": k})
    assert response.status_code == 422
    assert f"k={k} is out of range; expected an integer from 1 to 100" in response.json()["detail"]


def test_malformed_upsert_is_rejected_and_nothing_written(client: TestClient, rec: Recommender) -> None:
    before = rec.health()
    response = client.post("/items", json={"items": [{"id": "ok", "title": "fine"},
                                                     {"id": "bad", "title": "x", "price": -3}]})
    assert response.status_code == 422
    assert any(err["loc"][-1] == "price" and "greater than or equal to 0" in err["msg"]
               for err in response.json()["detail"])
    duplicate = client.post("/items", json={"items": [{"id": "a", "title": "x"}, {"id": "a", "title": "y"}]})
    assert duplicate.status_code == 422 and "repeats row 1" in duplicate.json()["detail"]
    assert rec.health() == before


def test_upsert_then_recommend_then_delete(client: TestClient) -> None:
    written = client.post("/items", json={"items": [{"id": "kayak", "title": "Sea kayak", "text": "kayak paddle"}]})
    assert written.status_code == 200 and written.json()["ids"] == ["kayak"]
    top = client.post("/recommend", json={"query": "kayak paddle", "k": 1}).json()["items"]
    assert top[0]["id"] == "kayak"
    deleted = client.request("DELETE", "/items", json={"ids": ["kayak", "nope"]}).json()
    assert deleted["ids"] == ["kayak"] and deleted["unknown_ids"] == ["nope"]
    assert client.delete("/items/kayak").status_code == 404


def test_similar_and_health_and_schema(client: TestClient) -> None:
    assert client.get("/similar/knife", params={"k": 1}).json()["items"][0]["id"] == "pan"
    assert client.get("/similar/nothing").status_code == 404
    assert client.get("/similar/knife", params={"k": 0}).status_code == 422
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["items"] == 6 and health["index_kind"] == "flat"
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/recommend", "/similar/{item_id}", "/items", "/health"} <= set(paths)


@pytest.mark.slow
def test_real_server_with_the_typed_client(rec: Recommender, api_keys: ApiKeysConfig, api_key: str) -> None:
    with live_server(create_app(recommender=rec, api_keys=api_keys)) as url:
        with RecommenderClient(url, api_key=api_key) as api:
            assert api.health().items == 6
            api.upsert_items([{"id": "wok", "title": "Carbon steel wok", "category": "kitchen", "text": "wok"}])
            result = api.recommend(["knife"], k=3, filters={"category": "kitchen"})
            assert {item.id for item in result.items} == {"pan", "wok"}
            assert api.similar("wok", k=1).items
            with pytest.raises(RecommenderClientError) as caught:
                api.recommend(["knife"], k=0)
            assert caught.value.status == 422 and "out of range" in str(caught.value)
            assert api.delete_items(["wok"]).ids == ["wok"]


class SlowQueryEncoder:
    """Hashing vectors, but encoding a one-text query waits until released (an expensive model, say)."""

    def __init__(self) -> None:
        from apps.recommender.encoders import HashingEncoder

        self.inner = HashingEncoder(256)
        self.source, self.dim = self.inner.source, self.inner.dim
        self.entered, self.release = threading.Event(), threading.Event()

    def encode(self, texts):
        if len(texts) == 1 and texts[0].startswith("slow"):
            self.entered.set()
            self.release.wait(10)
        return self.inner.encode(texts)


@pytest.mark.slow
def test_embedding_work_does_not_block_the_event_loop(tmp_path, api_keys: ApiKeysConfig, api_key: str) -> None:
    from apps.recommender.recommender import Recommender

    from .conftest import ITEMS, make_config

    encoder = SlowQueryEncoder()
    rec = Recommender.load(make_config(tmp_path), encoder=encoder)
    rec.upsert_items(ITEMS)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(recommender=rec, api_keys=api_keys), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        with RecommenderClient(f"http://127.0.0.1:{port}", api_key=api_key) as api:
            slow = threading.Thread(target=api.recommend, kwargs={"query": "slow camping", "k": 2})
            slow.start()
            assert encoder.entered.wait(10)
            started = time.monotonic()
            with RecommenderClient(f"http://127.0.0.1:{port}", api_key=api_key) as other:
                assert other.health().items == len(ITEMS)          # answered while the query is stuck
                assert other.recommend(["knife"], k=1).items[0].id == "pan"
            assert time.monotonic() - started < 5
            encoder.release.set()
            slow.join(10)
    finally:
        encoder.release.set()
        server.should_exit = True
        thread.join(10)


def _serve_workers(tmp_path, workers: int, api_keys: ApiKeysConfig):
    """``serve --workers N`` on a seeded store in its own process; returns (process, base url) once it answers."""
    import subprocess
    import sys

    from apps.recommender.encoders import HashingEncoder

    from .conftest import ITEMS, make_config

    config = make_config(tmp_path)
    seeded = Recommender.load(config, encoder=HashingEncoder(256))
    seeded.upsert_items(ITEMS)
    seeded.close()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "apps.recommender", "--store", str(config.store_dir),
                               "--embedder", "hashing", "--keys-file", str(api_keys.keys_file), "--log-level",
                               "WARNING", "serve", "--port", str(port), "--workers", str(workers)])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with RecommenderClient(url) as api:
                api.health()
            return server, url
        except Exception:  # not listening yet
            time.sleep(0.2)
    server.kill()
    raise AssertionError("the service did not answer within 60 s")


def _health_from_a_new_connection(url: str):
    with RecommenderClient(url) as api:
        return api.health()


@pytest.mark.slow
def test_two_service_workers_share_the_store(tmp_path, api_keys: ApiKeysConfig, api_key: str) -> None:
    """``serve --workers 2``: new connections go to both workers, and a write through one is served by both;
    both ask for the key, and both refuse it from the request after it is revoked."""
    from apps.recommender.keys import KeyStore, key_id_of

    server, url = _serve_workers(tmp_path, 2, api_keys)
    try:
        assert len({_health_from_a_new_connection(url).process for _ in range(4)}) == 2
        with RecommenderClient(url, api_key=api_key) as api:
            api.upsert_items([{"id": "kayak", "title": "Sea kayak", "text": "touring kayak with paddle"}])
            for _ in range(4):  # consecutive new connections alternate between the workers
                with RecommenderClient(url, api_key=api_key) as fresh:
                    assert fresh.recommend([], query="kayak paddle", k=1).items[0].id == "kayak"
            api.delete_items(["kayak"])
            for _ in range(4):
                with RecommenderClient(url, api_key=api_key) as fresh:
                    assert "kayak" not in {i.id for i in fresh.recommend([], query="kayak paddle", k=6).items}
        for _ in range(4):
            with RecommenderClient(url) as keyless, pytest.raises(RecommenderClientError) as refused:
                keyless.similar("knife")
            assert refused.value.status == 401 and "missing X-API-Key header" in str(refused.value)
        KeyStore(api_keys.keys_file).revoke(key_id_of(api_key))
        for _ in range(4):
            with RecommenderClient(url, api_key=api_key) as fresh, pytest.raises(RecommenderClientError) as refused:
                fresh.similar("knife")
            assert refused.value.status == 401 and "revoked" in str(refused.value)
    finally:
        server.terminate()
        assert server.wait(30) == 0


@pytest.mark.slow
def test_a_worker_that_dies_is_replaced_and_the_others_keep_serving(tmp_path, api_keys: ApiKeysConfig) -> None:
    import os
    import signal

    server, url = _serve_workers(tmp_path, 2, api_keys)
    try:
        victim = _health_from_a_new_connection(url).process
        os.kill(victim, signal.SIGKILL)
        served = {_health_from_a_new_connection(url).process for _ in range(4)}
        assert victim not in served
        deadline = time.monotonic() + 60
        while len(served) < 2 and time.monotonic() < deadline:  # the replacement joins within seconds
            served.add(_health_from_a_new_connection(url).process)
            time.sleep(0.2)
        assert len(served) == 2 and victim not in served
    finally:
        server.terminate()
        assert server.wait(30) == 0


def test_a_worker_app_ranks_on_its_loop_and_still_sees_other_workers_writes(
        rec: Recommender, tmp_path, api_keys: ApiKeysConfig, api_key: str) -> None:
    """``rank_on_loop`` (serve --workers N): history-only requests skip the thread pool, nothing else changes."""
    from apps.recommender.encoders import HashingEncoder

    from .conftest import make_config

    app = create_app(recommender=rec, rank_on_loop=True, api_keys=api_keys)
    with TestClient(app, headers={"X-API-Key": api_key}) as client:
        by_history = client.post("/recommend", json={"history": ["knife"], "k": 1,
                                                     "filters": {"category": "kitchen"}}).json()
        assert [item["id"] for item in by_history["items"]] == ["pan"]
        other = Recommender.load(make_config(tmp_path, mmr_lambda=1.0), encoder=HashingEncoder(256))
        try:  # another worker on the same store writes; this one catches up before ranking on its loop
            other.upsert_items([{"id": "wok", "title": "Carbon steel wok", "category": "kitchen",
                                 "text": "kitchen wok for cooking"}])
        finally:
            other.close()
        assert not rec.in_sync()
        similar = client.get("/similar/pan", params={"k": 6}).json()
        assert "wok" in {item["id"] for item in similar["items"]} and rec.in_sync()
        by_query = client.post("/recommend", json={"history": [], "query": "wok", "k": 1}).json()
        assert by_query["items"][0]["id"] == "wok"


@pytest.mark.slow
def test_workers_that_cannot_load_the_store_stop_the_service_with_the_reason(tmp_path) -> None:
    import subprocess
    import sys

    not_a_folder = tmp_path / "store"
    not_a_folder.write_text("a file where the store folder should be")
    done = subprocess.run([sys.executable, "-m", "apps.recommender", "--store", str(not_a_folder), "--embedder",
                           "hashing", "serve", "--port", str(free_port()), "--workers", "2"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "while loading the store" in done.stderr and str(not_a_folder) in done.stderr
