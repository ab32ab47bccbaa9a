"""A processor's instance id: stable across restarts, distinct between processors that run at once.

The stream's Kafka transactional id is ``<group>.<instance id>``. It must be *stable*: a processor
that restarts after ``kill -9`` calls ``init_transactions`` under the same id, which makes the
broker abort the transaction the dead process left open at once (with a new id that transaction
would hold back every ``read_committed`` reader of the output partitions until it timed out). And
it must be *distinct*: two live processors with one id fence each other. Since KIP-447 the
consumer group metadata sent with the offsets fences a processor whose partitions moved, so one
id per processor suffices (not one per input partition).

Without ``--instance-id`` (``FINANCE_INSTANCE_ID``) the id is ``<host>-<slot>``: the lowest slot
number whose lock file, next to the SQLite file, no live process holds (``flock``, released by
the kernel when the holder dies). So the n-th processor of a host always gets slot n-1, and a
restarted one gets its old slot back. Set the id explicitly where hosts are not stable (a pod
name of a StatefulSet, say).
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
from pathlib import Path

MAX_SLOTS = 1024


class InstanceSlot:
    """Holds the lock of one slot until :meth:`release` (or the process's end)."""

    def __init__(self, lock_dir: Path, group: str) -> None:
        self.lock_dir = lock_dir
        self.group = group
        self.slot: int | None = None
        self._handle = None

    def acquire(self) -> str:
        """Take the lowest free slot; returns the instance id ``<host>-<slot>``."""
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        safe_group = re.sub(r"[^A-Za-z0-9_.-]", "_", self.group)
        for slot in range(MAX_SLOTS):
            handle = open(self.lock_dir / f"{safe_group}.{slot}.lock", "a+")  # noqa: SIM115 (held while running)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            self.slot, self._handle = slot, handle
            return f"{socket.gethostname()}-{slot}"
        raise RuntimeError(f"all {MAX_SLOTS} instance slots of group {self.group} in {self.lock_dir} are taken; "
                           "set --instance-id (FINANCE_INSTANCE_ID)")

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing drops the flock
            self._handle = None


def transactional_id(group: str, instance_id: str) -> str:
    return f"{group}.{instance_id}"
