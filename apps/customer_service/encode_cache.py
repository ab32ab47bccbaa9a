"""Embed each text once per message: the intent ranking, the scope decision and retrieval all need
the same vector, and on a 2-core machine every MiniLM call costs ~20 ms of a reply's budget."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

EncodeFn = Callable[[list[str]], np.ndarray]


class CachedEncoder:
    """``encode`` with a small LRU of recent texts (the last ``size``), safe across threads."""

    def __init__(self, encode: EncodeFn, size: int = 1024) -> None:
        if size < 1:
            raise ValueError(f"cache size {size}; expected at least 1")
        self.encode_uncached = encode
        self.size = size
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, texts: list[str]) -> np.ndarray:
        texts = list(texts)
        with self._lock:
            found = {t: self._vectors[t] for t in texts if t in self._vectors}
            for text in found:
                self._vectors.move_to_end(text)
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            fresh = self.encode_uncached(missing)
            with self._lock:
                for text, vector in zip(missing, fresh, strict=True):
                    found[text] = self._vectors[text] = vector
                    self._vectors.move_to_end(text)
                while len(self._vectors) > self.size:
                    self._vectors.popitem(last=False)
        if not texts:
            return self.encode_uncached([])
        return np.stack([found[t] for t in texts])
