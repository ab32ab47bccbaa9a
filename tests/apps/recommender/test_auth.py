"""API keys and rate limits on the real app: FastAPI's TestClient, and a real uvicorn server for the client."""

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from apps.recommender.api import create_app
from apps.recommender.auth import check_key
from apps.recommender.cli import main
from apps.recommender.client import RecommenderClient, RecommenderClientError
from apps.recommender.config import ApiKeysConfig
from apps.recommender.keys import KeyStore, key_id_of, read_keys
from apps.recommender.recommender import Recommender

from .conftest import live_server

PROTECTED = [("POST", "/recommend", {"history": ["knife"], "k": 1}), ("GET", "/similar/knife", None),
             ("POST", "/items", {"items": [{"id": "wok", "title": "Wok"}]}), ("DELETE", "/items", {"ids": ["wok"]}),
             ("DELETE", "/items/wok", None)]


@pytest.fixture
def app(rec: Recommender, api_keys: ApiKeysConfig):
    return create_app(recommender=rec, api_keys=api_keys)


def _call(client: TestClient, method: str, path: str, body: dict | None, key: str | None = None):
    return client.request(method, path, json=body, headers={"X-API-Key": key} if key is not None else {})


def test_health_and_the_docs_are_open(app, api_key: str) -> None:
    with TestClient(app) as client:
        assert client.get("/health").json()["status"] == "ok"
        assert client.get("/docs").status_code == 200
        schema = client.get("/openapi.json").json()
        assert schema["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
        assert "security" not in schema["paths"]["/health"]["get"]
        assert schema["paths"]["/recommend"]["post"]["security"] == [{"APIKeyHeader": []}]


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_every_other_route_needs_a_key(app, api_key: str, method: str, path: str, body: dict | None) -> None:
    with TestClient(app) as client:
        missing = _call(client, method, path, body)
        assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "X-API-Key"
        assert "missing X-API-Key header" in missing.json()["detail"]
        assert _call(client, method, path, body, "").status_code == 401
        unknown = _call(client, method, path, body, "rk-00000000.made-up")
        assert unknown.status_code == 401 and "unknown API key" in unknown.json()["detail"]
        forged = api_key[:-2] + ("AA" if not api_key.endswith("AA") else "BB")  # right id, wrong secret
        assert _call(client, method, path, body, forged).status_code == 401
        assert _call(client, method, path, body, api_key).status_code in (200, 404)  # /items/wok: 404 if gone


def test_the_right_key_is_served(app, api_key: str) -> None:
    with TestClient(app, headers={"X-API-Key": api_key}) as client:
        response = client.post("/recommend", json={"history": ["knife"], "k": 1, "filters": {"category": "kitchen"}})
        assert response.status_code == 200 and response.json()["items"][0]["id"] == "pan"


def test_a_key_revoked_by_the_cli_is_refused_by_the_running_app(app, api_keys: ApiKeysConfig, api_key: str,
                                                                capsys: pytest.CaptureFixture) -> None:
    other = KeyStore(api_keys.keys_file).create("other")[1]
    with TestClient(app) as client:
        assert client.get("/similar/knife", headers={"X-API-Key": api_key}).status_code == 200
        assert main(["--keys-file", str(api_keys.keys_file), "keys", "revoke", key_id_of(api_key)]) == 0
        refused = client.get("/similar/knife", headers={"X-API-Key": api_key})
        assert refused.status_code == 401
        assert f"API key {key_id_of(api_key)} ('tests') was revoked at" in refused.json()["detail"]
        assert client.get("/similar/knife", headers={"X-API-Key": other}).status_code == 200
        new = KeyStore(api_keys.keys_file).create("new")[1]  # and a new key works without a restart
        assert client.get("/similar/knife", headers={"X-API-Key": new}).status_code == 200


def test_over_the_keys_rate_is_429_with_retry_after(app, api_keys: ApiKeysConfig, api_key: str) -> None:
    limited = KeyStore(api_keys.keys_file).create("limited", rate_per_minute=3)[1]
    with TestClient(app) as client:
        assert [client.get("/similar/knife", headers={"X-API-Key": limited}).status_code
                for _ in range(3)] == [200, 200, 200]
        over = client.get("/similar/knife", headers={"X-API-Key": limited})
        assert over.status_code == 429
        assert 1 <= int(over.headers["Retry-After"]) <= 60
        assert f"over its rate limit of 3 requests per minute; retry in {over.headers['Retry-After']} s" \
            in over.json()["detail"]
        # another key has its own count
        assert client.get("/similar/knife", headers={"X-API-Key": api_key}).status_code == 200


def test_the_servers_default_rate_applies_to_keys_without_their_own(rec: Recommender, api_keys: ApiKeysConfig,
                                                                   api_key: str) -> None:
    app = create_app(recommender=rec, api_keys=ApiKeysConfig(keys_file=api_keys.keys_file, rate_per_minute=2))
    with TestClient(app, headers={"X-API-Key": api_key}) as client:
        assert [client.get("/similar/knife").status_code for _ in range(3)] == [200, 200, 429]
        assert client.get("/health").status_code == 200  # not counted, not limited


def test_without_a_keys_file_the_app_starts_warns_and_says_how_to_make_a_key(
        rec: Recommender, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    nowhere = tmp_path / "no" / "api_keys.json"
    with caplog.at_level(logging.WARNING, logger="apps.recommender.auth"), \
            TestClient(create_app(recommender=rec, api_keys=ApiKeysConfig(keys_file=nowhere))) as client:
        assert client.get("/health").status_code == 200
        refused = client.post("/recommend", json={"history": ["knife"]}, headers={"X-API-Key": "rk-1.x"})
        assert refused.status_code == 401
        assert "no API keys yet; create one with `python -m apps.recommender keys create NAME`" \
            in refused.json()["detail"]
    assert f"no API keys in {nowhere}" in caplog.text and "keys create NAME" in caplog.text
    assert not nowhere.exists()  # the server only reads


def test_an_unreadable_keys_file_is_503_naming_it(app, api_keys: ApiKeysConfig, api_key: str) -> None:
    with TestClient(app, headers={"X-API-Key": api_key}) as client:
        assert client.get("/similar/knife").status_code == 200
        api_keys.keys_file.write_text("{broken")
        response = client.get("/similar/knife")
        assert response.status_code == 503 and str(api_keys.keys_file) in response.json()["detail"]


def test_check_key_decides_without_http(api_keys: ApiKeysConfig, api_key: str) -> None:
    from apps.recommender.auth import AuthError

    keys = read_keys(api_keys.keys_file)
    assert check_key(keys, api_key).name == "tests"
    for presented, reason in ((None, "missing X-API-Key header"), ("rk-x.y", "unknown API key")):
        with pytest.raises(AuthError, match=reason) as refused:
            check_key(keys, presented)
        assert refused.value.status == 401
    with pytest.raises(AuthError, match="no API keys yet"):
        check_key({}, api_key)


@pytest.mark.slow
def test_the_typed_client_sends_the_key_and_reports_401_and_429(rec: Recommender, api_keys: ApiKeysConfig,
                                                                api_key: str) -> None:
    limited = KeyStore(api_keys.keys_file).create("limited", rate_per_minute=2)[1]
    with live_server(create_app(recommender=rec, api_keys=api_keys)) as url:
        with RecommenderClient(url) as keyless:
            assert keyless.health().items == 6
            with pytest.raises(RecommenderClientError) as refused:
                keyless.similar("knife")
            assert refused.value.status == 401 and refused.value.retry_after is None
            assert "keys create NAME" in str(refused.value)
        with RecommenderClient(url, api_key=api_key) as api:
            assert api.similar("knife", k=1).items[0].id == "pan"
        with RecommenderClient(url, api_key=limited) as api:
            api.similar("knife")
            api.similar("knife")
            with pytest.raises(RecommenderClientError) as over:
                api.similar("knife")
            assert over.value.status == 429 and 1 <= over.value.retry_after <= 60
            assert f"retry after {over.value.retry_after} s" in str(over.value)
