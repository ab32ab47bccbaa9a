"""Fixtures shared by the core training tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def offline() -> Iterator[None]:
    """No hub access; one torch thread (on a shared 2-core machine, 2 threads contend and run ~10x slower)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("TRANSFORMERS_OFFLINE", "1")
        patch.setenv("TEXTML_NUM_THREADS", "1")
        yield
