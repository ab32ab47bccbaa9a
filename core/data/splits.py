"""The split function of ../shared/BENCHMARKS.md, for everything that trains on the shared datasets.

``split_bucket(text) = int(sha1(text.strip()), 16) % 10`` decides every split, so duplicate
sentences share a split and the split does not depend on file order. Train is bucket != 0 and
dev bucket 0 for the datasets whose test split is a separate file (BANKING77, Twitter).
"""

from __future__ import annotations

import hashlib

DEV_BUCKET = 0


def split_bucket(text: str) -> int:
    return int(hashlib.sha1(text.strip().encode("utf-8")).hexdigest(), 16) % 10


def is_dev(text: str) -> bool:
    """Whether a row of a train file belongs to the dev split."""
    return split_bucket(text) == DEV_BUCKET
