import pytest

from apps.recommender.config import config_from_env


def test_catalog_near_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert config_from_env().ranking.catalog_near
    monkeypatch.setenv("TEXTML_RECOMMENDER_CATALOG_NEAR", "0")
    assert not config_from_env().ranking.catalog_near
    monkeypatch.setenv("TEXTML_RECOMMENDER_CATALOG_NEAR", "maybe")
    with pytest.raises(ValueError, match="TEXTML_RECOMMENDER_CATALOG_NEAR='maybe'; expected 1 or 0"):
        config_from_env()
