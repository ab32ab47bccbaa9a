"""`make up` / `make down`: honcho runs the Procfile's services; Kafka answers, then stops."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.kafka import broker

REPO_ROOT = Path(__file__).resolve().parents[2]


def _stack(command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "infra.stack", command], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=180)


@pytest.mark.slow
@pytest.mark.kafka
def test_up_starts_kafka_under_honcho_and_down_stops_it(tmp_path: Path) -> None:
    port = int(os.environ.get("TEST_STACK_KAFKA_PORT", "19392"))
    # Kafka alone: the apps' services have their own tests (and would take the stack's ports here)
    env = {**os.environ, "TEXTML_VAR_DIR": str(tmp_path), "KAFKA_PORT": str(port), "STACK_SERVICES": "kafka"}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    servers = f"127.0.0.1:{port}"
    try:
        up = _stack("up", env)
        assert up.returncode == 0, up.stdout + up.stderr
        assert broker.answers_metadata(servers)
        assert "honcho    up" in up.stdout and f"kafka     up    {servers}" in up.stdout
        assert (tmp_path / "log" / "kafka.log").read_text().count("Kafka Server started") == 1

        again = _stack("up", env)  # idempotent: nothing new starts
        assert again.returncode == 0 and "already running" in again.stdout
    finally:
        down = _stack("down", env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not broker.answers_metadata(servers, timeout_s=2.0)
    status = _stack("status", env)
    assert status.returncode == 3 and "kafka     down" in status.stdout
