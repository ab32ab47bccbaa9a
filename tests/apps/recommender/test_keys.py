"""The key store and ``python -m apps.recommender keys``: hashes only, mode 0600, clear errors."""

import hashlib
import json
import stat
from pathlib import Path

import pytest

from apps.recommender.cli import main
from apps.recommender.keys import ApiKeyError, KeyStore, key_id_of, match_key, read_keys


def _keys(path: Path, *args: str) -> list[str]:
    return ["--keys-file", str(path), "--log-level", "WARNING", "keys", *args]


def test_the_file_holds_only_a_hash_of_the_key_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "var" / "api_keys.json"
    record, key = KeyStore(path).create("shop-frontend", rate_per_minute=30)
    text = path.read_text()
    secret = key.partition(".")[2]
    assert key not in text and secret not in text and len(secret) >= 43  # token_urlsafe(32): 256 bits
    assert json.loads(text)["keys"][0]["sha256"] == hashlib.sha256(key.encode()).hexdigest() == record.sha256
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert record.id == key_id_of(key) and record.rate_per_minute == 30 and record.active


def test_a_key_matches_only_itself(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "api_keys.json")
    record, key = store.create("a")
    keys = read_keys(store.path)
    assert match_key(keys, key) == record
    assert match_key(keys, key[:-1] + ("x" if key[-1] != "x" else "y")) is None  # right id, wrong secret
    assert match_key(keys, "rk-00000000.whatever") is None and match_key(keys, "not a key") is None
    revoked = store.revoke(record.id)
    assert match_key(read_keys(store.path), key) == revoked and not revoked.active
    assert store.revoke(record.id).revoked == revoked.revoked  # twice: nothing changes


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "api_keys.json"
    path.write_text("{not json")
    with pytest.raises(ApiKeyError, match=f"the API keys file {path} cannot be read"):
        read_keys(path)


def test_cli_create_prints_the_key_once_then_list_and_revoke(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "api_keys.json"
    assert main(_keys(path, "create", "shop", "--rate", "30")) == 0
    created = capsys.readouterr()
    key = created.out.strip()  # stdout is the key alone: KEY=$(python -m apps.recommender keys create NAME)
    assert key.startswith("rk-") and "\n" not in key
    key_id = key_id_of(key)
    assert f"created API key {key_id} for 'shop' (30 requests per minute)" in created.err
    assert "only time the key is shown" in created.err
    assert main(_keys(path, "create", "batch")) == 0
    capsys.readouterr()

    assert main(_keys(path, "list")) == 0
    listing = capsys.readouterr().out
    assert key_id in listing and "shop" in listing and "30" in listing and "6000 (default)" in listing
    assert "rk-" not in listing and key.partition(".")[2] not in listing
    assert main(_keys(path, "list", "--json")) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in records] == ["shop", "batch"] and all("sha256" not in r for r in records)
    assert records[0] == {"id": key_id, "name": "shop", "created": records[0]["created"], "revoked": None,
                          "rate_per_minute": 30}

    assert main(_keys(path, "revoke", key_id)) == 0
    assert f"API key {key_id} ('shop') is revoked since" in capsys.readouterr().out
    assert main(_keys(path, "list", "--json")) == 0
    assert json.loads(capsys.readouterr().out)[0]["revoked"]


def test_cli_list_without_a_file_says_how_to_create_a_key(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(_keys(tmp_path / "none.json", "list")) == 0
    assert "no API keys in" in (out := capsys.readouterr().out) and "keys create NAME" in out


@pytest.mark.parametrize(("args", "message"), [
    (["create", "has space"], "key name 'has space' is not allowed; expected 1 to 64 letters, digits or ._@-"),
    (["create", "x", "--rate", "0"], "rate 0 is out of range; expected a whole number >= 1 of requests per minute"),
    (["revoke", "nope"], "no API key with id 'nope' in"),
    (["revoke", "0123abcd"], "no API key with id '0123abcd' in"),
])
def test_cli_errors_name_the_bad_value(tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str],
                                       message: str) -> None:
    path = tmp_path / "api_keys.json"
    assert main(_keys(path, *args)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert not path.exists()  # a refused command writes nothing


def test_cli_refuses_a_second_active_key_of_the_same_name(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "api_keys.json"
    assert main(_keys(path, "create", "shop")) == 0
    key_id = key_id_of(capsys.readouterr().out.strip())
    assert main(_keys(path, "create", "shop")) == 2
    assert f"an active key named 'shop' exists already (id {key_id})" in capsys.readouterr().err
    assert main(_keys(path, "revoke", key_id)) == 0
    assert main(_keys(path, "create", "shop")) == 0  # once revoked, the name is free again


def test_cli_rate_must_be_a_number(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as done:
        main(_keys(tmp_path / "api_keys.json", "create", "x", "--rate", "lots"))
    assert done.value.code == 2 and "invalid int value: 'lots'" in capsys.readouterr().err
