"""CachedEncoder embeds each text once and keeps the order, duplicates and the LRU bound."""

from __future__ import annotations

import numpy as np
import pytest

from apps.customer_service.encode_cache import CachedEncoder


def test_each_text_is_encoded_once_and_rows_keep_their_order() -> None:
    calls: list[list[str]] = []

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return np.array([[len(t), ord(t[0])] for t in texts], dtype=np.float32)

    cached = CachedEncoder(encode, size=2)
    first = cached(["card", "fee", "card"])
    assert first.tolist() == [[4, 99], [3, 102], [4, 99]] and calls == [["card", "fee"]]
    assert cached(["fee"]).tolist() == [[3, 102]] and len(calls) == 1  # a hit
    cached(["pin"])  # evicts "card", the least recently used
    cached(["card"])
    assert calls[-1] == ["card"] and len(calls) == 3
    with pytest.raises(ValueError, match="cache size 0"):
        CachedEncoder(encode, size=0)
