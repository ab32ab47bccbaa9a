"""Network settings: loopback by default, the web chat's own origins, tokens checked without showing them."""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.customer_service.settings import BotSettings, settings_from_env


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"TEXTML_VAR_DIR": str(tmp_path / "var"), "CS_STATE_DIR": str(tmp_path), **extra}


def test_defaults_listen_on_loopback_and_allow_the_web_chat_origin(tmp_path: Path) -> None:
    settings = settings_from_env(env_for(tmp_path, CS_ACTIONS_PORT="6055", CS_RASA_PORT="6005"))
    assert (settings.rasa_host, settings.actions_host) == ("127.0.0.1", "127.0.0.1")
    assert settings.rasa_url == "http://127.0.0.1:6005" and settings.actions_url == "http://127.0.0.1:6055"
    assert settings.cors_origins == ("http://127.0.0.1:6055", "http://localhost:6055")
    assert settings.rasa_token is None and settings.actions_token is None
    assert settings.rasa_token_file == tmp_path / "secrets" / "rasa_token"
    assert settings.actions_token_file == tmp_path / "secrets" / "actions_token"


def test_hosts_origins_and_tokens_from_the_environment(tmp_path: Path) -> None:
    settings = settings_from_env(env_for(
        tmp_path, CS_RASA_HOST="0.0.0.0", CS_ACTIONS_HOST="10.1.2.3", CS_RASA_TOKEN="r" * 16,
        CS_ACTIONS_TOKEN="a-b_c.d~" * 3, CS_WEB_ORIGINS=" https://chat.example.com , http://127.0.0.1:5055,"))
    assert settings.rasa_url == "http://127.0.0.1:5005"  # a wildcard bind is reached on loopback
    assert settings.actions_url == "http://10.1.2.3:5055"
    assert settings.cors_origins == ("https://chat.example.com", "http://127.0.0.1:5055")
    assert (settings.rasa_token, settings.actions_token) == ("r" * 16, "a-b_c.d~" * 3)
    assert BotSettings(actions_host="10.1.2.3").cors_origins == (
        "http://10.1.2.3:5055", "http://127.0.0.1:5055", "http://localhost:5055")


@pytest.mark.parametrize(("name", "value", "message"), [
    ("CS_WEB_ORIGINS", "http://127.0.0.1:5055/", "CS_WEB_ORIGINS names 'http://127.0.0.1:5055/', which is not an "
                                                 "origin; expected scheme://host\\[:port\\] without a path"),
    ("CS_WEB_ORIGINS", "https://*.example.com", "which is not an origin"),
    ("CS_RASA_HOST", "http://127.0.0.1", "CS_RASA_HOST='http://127.0.0.1' is not a host to listen on"),
])
def test_bad_network_settings_are_named(tmp_path: Path, name: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        settings_from_env(env_for(tmp_path, **{name: value}))


def test_a_weak_token_is_refused_without_showing_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"CS_RASA_TOKEN is not a usable token \(6 characters\); expected at least "
                                         "16 URL-safe characters") as error:
        settings_from_env(env_for(tmp_path, CS_RASA_TOKEN="hunter"))
    assert "hunter" not in str(error.value)
    with pytest.raises(ValueError, match="CS_ACTIONS_TOKEN is not a usable token"):
        settings_from_env(env_for(tmp_path, CS_ACTIONS_TOKEN="has spaces in it, sixteen+"))


def test_data_stores_default_to_embedded_sqlite_and_in_memory_locks(tmp_path: Path) -> None:
    settings = settings_from_env(env_for(tmp_path))
    assert (settings.tracker_store, settings.lock_store) == ("sqlite", "memory")
    assert (settings.postgres_host, settings.postgres_port) == ("127.0.0.1", 5432)  # infra/postgres.py's defaults
    assert (settings.redis_host, settings.redis_port) == ("127.0.0.1", 6379)
    assert settings.var_dir == tmp_path / "var"
    assert settings.postgres_password is None and settings.redis_password is None


def test_postgresql_and_redis_from_the_environment_with_passwords_kept_out_of_repr(tmp_path: Path) -> None:
    settings = settings_from_env(env_for(
        tmp_path, CS_TRACKER_STORE=" PostgreSQL ", CS_LOCK_STORE="redis", POSTGRES_PORT="15432", REDIS_PORT="16379",
        POSTGRES_HOST="10.0.0.5", POSTGRES_PASSWORD="pg-secret-value", REDIS_PASSWORD="redis-secret-value"))
    assert (settings.tracker_store, settings.lock_store) == ("postgresql", "redis")
    assert (settings.postgres_host, settings.postgres_port, settings.redis_port) == ("10.0.0.5", 15432, 16379)
    assert (settings.postgres_password, settings.redis_password) == ("pg-secret-value", "redis-secret-value")
    assert "secret-value" not in repr(settings)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("CS_TRACKER_STORE", "mongodb", "CS_TRACKER_STORE='mongodb' is not a supported store; expected one of: "
                                    "sqlite, postgresql"),
    ("CS_LOCK_STORE", "sqlite", "CS_LOCK_STORE='sqlite' is not a supported store; expected one of: memory, redis"),
    ("POSTGRES_PORT", "54x", "POSTGRES_PORT='54x' is not a TCP port"),
    ("REDIS_PORT", "70000", "REDIS_PORT='70000' is not a TCP port"),
    ("REDIS_HOST", "redis://h", "REDIS_HOST='redis://h' is not a host to connect to"),
])
def test_bad_data_store_settings_are_named(tmp_path: Path, name: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        settings_from_env(env_for(tmp_path, **{name: value}))


def test_a_password_with_a_line_break_is_refused_without_showing_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"POSTGRES_PASSWORD contains a line break or NUL \(13 characters\)") as error:
        settings_from_env(env_for(tmp_path, POSTGRES_PASSWORD="secret\nsecret"))
    assert "secret" not in str(error.value).replace("POSTGRES_PASSWORD", "")
