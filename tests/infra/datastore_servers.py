"""Real PostgreSQL and Redis servers for tests (``tests/infra/test_datastores.py``, the bot's replica test).

``new_var`` makes a temporary ``var/`` that Debian's ``postgres`` and ``redis`` users may pass through;
``stack`` runs ``python -m infra.stack`` in it; the ``datastore_binaries`` fixture (``tests/conftest.py``)
installs the packages with ``install_or_skip`` when missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from infra import postgres

REPO_ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ("STACK_SERVICES", "POSTGRES_PASSWORD", "REDIS_PASSWORD", "CS_TRACKER_STORE", "CS_LOCK_STORE",
            "TEXTML_RECOMMENDER_DIR")


def installed() -> bool:
    try:
        postgres.bin_dir()
    except postgres.DataStoreError:
        return False
    return shutil.which("redis-server") is not None


def install_or_skip() -> None:
    """Install the two Debian packages when missing (as `make datastores` does); skip only if apt cannot."""
    if installed():
        return
    result = subprocess.run([str(REPO_ROOT / "infra" / "apt-install.sh"),
                             "postgresql=/usr/lib/postgresql/*/bin/postgres", "redis-server=redis-server"],
                            capture_output=True, text=True)
    if result.returncode != 0 or not installed():
        pytest.skip(f"PostgreSQL/Redis binaries absent and apt could not install them: {result.stderr[-500:]}")


def env_for(var: Path, **extra: str) -> dict[str, str]:
    """The process environment without the data-store settings, with ``var`` as ``TEXTML_VAR_DIR``."""
    env = {key: value for key, value in os.environ.items() if key not in SETTINGS}
    return {**env, "TEXTML_VAR_DIR": str(var), "KAFKA_PORT": os.environ.get("TEST_KAFKA_PORT", "29192"), **extra}


def new_var() -> Path:
    """A temporary var/ that the `postgres` and `redis` users may pass through (pytest's tmp_path is 0700)."""
    var = Path(tempfile.mkdtemp(prefix="textml-datastores-"))
    var.chmod(0o711)
    return var


def stack(command: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "infra.stack", command], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def logs(var: Path) -> str:
    return "".join(f"\n--- {log.name}\n{log.read_text(errors='replace')[-2000:]}"
                   for log in sorted((var / "log").glob("*.log")))
