"""A processor's instance id and the lock that keeps its local store its own.

The stream's Kafka transactional id is ``<group>.<instance id>``. It must be *stable*: a processor
that restarts after ``kill -9`` calls ``init_transactions`` under the same id, which makes the
broker abort the transaction the dead process left open at once (with a new id that transaction
would hold back every ``read_committed`` reader of the output partitions until it timed out). And
it must be *distinct*: two live processors with one id fence each other. Since KIP-447 the
consumer group metadata sent with the offsets fences a processor whose partitions moved, so one
id per processor suffices (not one per input partition).

Each processor has its own state store (``--db``), so the store names the processor: without
``--instance-id`` (``FINANCE_INSTANCE_ID``) the id is ``<host>-<8 hex digits of the store's absolute
path>``, the same after a restart in the same working directory and different for every other
store on the host. Set the id explicitly where hosts are not stable (a pod name of a StatefulSet,
say). :class:`StoreLock` refuses a second processor on the same store, which would share its id.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
from pathlib import Path


class StoreInUseError(RuntimeError):
    """Another running processor holds this state store."""


class StoreLock:
    """An exclusive ``flock`` on ``<store>.lock`` until :meth:`release` (the kernel drops it when the holder dies)."""

    def __init__(self, store_path: Path) -> None:
        self.path = store_path.with_name(store_path.name + ".lock")
        self._handle = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 (held while running)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise StoreInUseError(f"the state store {self.path.with_suffix('')} is in use by process {holder}; "
                                  "every processor needs its own store: give this one its own TEXTML_VAR_DIR "
                                  "(or --db / FINANCE_DB)") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing drops the flock
            self._handle = None


def default_instance_id(store_path: Path) -> str:
    digest = hashlib.sha1(str(store_path.resolve()).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}-{digest}"


def transactional_id(group: str, instance_id: str) -> str:
    return f"{group}.{instance_id}"
