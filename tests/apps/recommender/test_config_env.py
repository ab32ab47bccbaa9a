import pytest

from apps.recommender.config import config_from_env


def test_the_api_keys_file_and_rate_follow_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from pathlib import Path

    from apps.recommender.config import REPO_ROOT, api_keys_from_env

    for name in ("TEXTML_VAR_DIR", "TEXTML_RECOMMENDER_API_KEYS_FILE", "TEXTML_RECOMMENDER_RATE_PER_MINUTE"):
        monkeypatch.delenv(name, raising=False)
    assert api_keys_from_env().keys_file == REPO_ROOT / "var" / "recommender" / "api_keys.json"
    assert api_keys_from_env().rate_per_minute == 6000
    monkeypatch.setenv("TEXTML_VAR_DIR", str(tmp_path))
    assert config_from_env().api_keys.keys_file == tmp_path / "recommender" / "api_keys.json"
    monkeypatch.setenv("TEXTML_RECOMMENDER_API_KEYS_FILE", str(tmp_path / "k.json"))
    assert api_keys_from_env().keys_file == tmp_path / "k.json"
    assert api_keys_from_env(Path("/flag.json")).keys_file == Path("/flag.json")  # --keys-file wins
    monkeypatch.setenv("TEXTML_RECOMMENDER_RATE_PER_MINUTE", "120")
    assert config_from_env().api_keys.rate_per_minute == 120
    for bad in ("0", "fast", "-5"):
        monkeypatch.setenv("TEXTML_RECOMMENDER_RATE_PER_MINUTE", bad)
        with pytest.raises(ValueError, match=f"TEXTML_RECOMMENDER_RATE_PER_MINUTE='{bad}'; expected a whole number"):
            config_from_env()
