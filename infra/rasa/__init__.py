"""The Rasa 3.6 server's own environment (Python 3.10), apart from the project's.

``RASA_VENV`` (default ``.venv-rasa`` in the repository) names it; ``make rasa-env`` builds it
from ``RASA_PYTHON`` with the pinned ``infra/rasa/requirements.lock``.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def rasa_venv(env: dict[str, str] = os.environ) -> Path:
    return Path(env.get("RASA_VENV", REPO_ROOT / ".venv-rasa")).resolve()


def rasa_executable(env: dict[str, str] = os.environ) -> Path:
    """The ``rasa`` command of the Rasa environment; raises if `make rasa-env` has not run."""
    path = rasa_venv(env) / "bin" / "rasa"
    if not path.exists():
        raise FileNotFoundError(f"no Rasa environment at {path.parent.parent}; run `make rasa-env` "
                                "(set RASA_PYTHON to a Python 3.10 if none is found)")
    return path


def rasa_environment(env: dict[str, str] = os.environ) -> dict[str, str]:
    """Environment for Rasa subprocesses: no telemetry, quiet TensorFlow."""
    return {**env, "RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "2",
            "SQLALCHEMY_SILENCE_UBER_WARNING": "1"}
