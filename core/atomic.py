"""Atomic writes: a reader sees the old state or the new one, never half of either.

Folders (models, indexes) are written into a temporary sibling and renamed into place;
single files (cards, alias maps) go through a temporary file and ``os.replace``. Both are
fsynced first, so a crash or power loss mid-write leaves no partial artifact behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


class AtomicWriteError(OSError):
    """The target of an atomic write is in the way or cannot be written."""


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_directory(target: Path, replace: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it becomes ``target`` in one rename.

    On any exception the temporary folder is removed and ``target`` is untouched. With
    ``replace=False`` an existing ``target`` is an error (versions are immutable); with
    ``replace=True`` the old folder is swapped out and removed after the rename.
    """
    target = Path(target)
    if target.exists() and not replace:
        raise AtomicWriteError(f"{target} already exists; artifacts are immutable, write a new version")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield staging
        _fsync_tree(staging)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / "previous")
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(staging, target)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``: readers see old or new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def is_staging_leftover(path: Path) -> bool:
    """True for temporary folders/files left by a crashed writer (readers skip them)."""
    return path.name.startswith(".") and (".tmp-" in path.name or ".old-" in path.name)
