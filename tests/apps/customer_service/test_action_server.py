"""The action server's token check (the pure part; the e2e test calls the real server)."""

from __future__ import annotations

import pytest

from apps.customer_service.action_server import OPEN_PATHS, bearer_matches

TOKEN = "s3cret-token-0123456789"


@pytest.mark.parametrize(("header", "expected"), [
    (f"Bearer {TOKEN}", True), (f"bearer {TOKEN}", True), (f"  Bearer   {TOKEN} ", True),
    (None, False), ("", False), ("Bearer", False), (f"Basic {TOKEN}", False), (TOKEN, False),
    (f"Bearer {TOKEN}x", False), (f"Bearer {TOKEN[:-1]}", False), ("Bearer ü", False),
])
def test_bearer_matches(header: str | None, expected: bool) -> None:
    assert bearer_matches(header, TOKEN) is expected


def test_only_the_page_and_health_are_open() -> None:
    assert OPEN_PATHS == {"/", "/health"}
