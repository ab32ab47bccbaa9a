"""The stream's configuration: one frozen dataclass, filled from the environment in one place.

Every command builds a :class:`StreamConfig` with :func:`config_from_env` and passes it
down; nothing else in the app reads environment variables. Command-line options override
the environment (``dataclasses.replace``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent
REPO_ROOT = APP_DIR.parents[1]
DEMO_DIR = APP_DIR / "demo"


def default_var_dir() -> Path:
    return Path(os.environ.get("TEXTML_VAR_DIR", REPO_ROOT / "var"))


@dataclass(frozen=True)
class StreamConfig:
    """Where to read and write, which model, and how to batch. Defaults are the ones `make up` runs."""

    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = "finance-monitor"
    input_topic: str = "finance.news"
    scored_topic: str = "finance.scored"
    alerts_topic: str = "finance.alerts"
    deadletter_topic: str = "finance.deadletter"
    model_name: str = "finance-sentiment"
    model_version: str = "production"     # a registry alias or version
    registry_root: Path | None = None      # None: core's default (TEXTML_MODEL_DIR or var/models)
    rules_path: Path = DEMO_DIR / "rules.yaml"
    tickers_path: Path | None = DEMO_DIR / "tickers.yaml"
    db_path: Path = REPO_ROOT / "var" / "finance_monitor" / "alerts.db"   # this processor's own state store
    batch_size: int = 64                   # records per batch at most ...
    max_wait_ms: int = 250                 # ... and at most this long collecting them ...
    linger_ms: int = 5                     # ... stopping early once no record came for this long
    max_message_bytes: int = 65_536
    max_text_chars: int = 10_000
    metrics_port: int = 9464               # 0: no metrics endpoint
    webhook_url: str | None = None         # Slack-compatible incoming webhook; None: no webhook
    webhook_retries: int = 5
    webhook_backoff_s: float = 0.5         # doubled after each failed attempt
    device: str | None = None              # None: CUDA when available, else CPU
    partitions: int = 4                    # partitions of topics the stream creates
    instance_id: str | None = None         # this processor's part of the transactional id; None: <host>-<store hash>
    dedup_records: int = 100_000           # an id repeated within this many offsets of a partition counts once

    @property
    def changelog_topic(self) -> str:
        """The compacted topic behind every processor's state store (Kafka Streams' ``<app>-<store>-changelog``)."""
        return f"{self.group_id}-state-changelog"

    def validate(self) -> None:
        checks = {"batch_size": self.batch_size >= 1, "max_wait_ms": self.max_wait_ms >= 0,
                  "linger_ms": self.linger_ms >= 0,
                  "max_message_bytes": self.max_message_bytes >= 64, "max_text_chars": self.max_text_chars >= 1,
                  "metrics_port": 0 <= self.metrics_port < 65536, "webhook_retries": self.webhook_retries >= 1,
                  "webhook_backoff_s": self.webhook_backoff_s >= 0, "partitions": self.partitions >= 1,
                  # a redo spans at most one batch, and must stay inside the dedup horizon
                  "dedup_records": self.dedup_records == 0 or self.dedup_records >= self.batch_size,
                  "instance_id": self.instance_id is None or bool(self.instance_id.strip())}
        bad = [f"{name}={getattr(self, name)!r}" for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid stream setting(s) {', '.join(bad)}; see `python -m apps.finance_monitor run "
                             "--help` for what each one means")


def config_from_env(env: dict[str, str] | None = None) -> StreamConfig:
    """``KAFKA_BOOTSTRAP_SERVERS``, ``FINANCE_*`` variables and ``TEXTML_VAR_DIR``; unset ones keep the defaults."""
    env = os.environ if env is None else env
    var = Path(env.get("TEXTML_VAR_DIR", REPO_ROOT / "var"))
    values: dict = {"bootstrap_servers": env.get("KAFKA_BOOTSTRAP_SERVERS", StreamConfig.bootstrap_servers),
                    "db_path": Path(env.get("FINANCE_DB", var / "finance_monitor" / "alerts.db"))}
    strings = {"FINANCE_GROUP": "group_id", "FINANCE_INPUT_TOPIC": "input_topic",
               "FINANCE_SCORED_TOPIC": "scored_topic", "FINANCE_ALERTS_TOPIC": "alerts_topic",
               "FINANCE_DEADLETTER_TOPIC": "deadletter_topic", "FINANCE_MODEL": "model_name",
               "FINANCE_MODEL_VERSION": "model_version", "FINANCE_WEBHOOK_URL": "webhook_url",
               "FINANCE_DEVICE": "device", "FINANCE_INSTANCE_ID": "instance_id"}
    for key, name in strings.items():
        if env.get(key):
            values[name] = env[key]
    paths = {"FINANCE_RULES": "rules_path", "FINANCE_TICKERS": "tickers_path", "TEXTML_MODEL_DIR": "registry_root"}
    for key, name in paths.items():
        if env.get(key):
            values[name] = Path(env[key])
    numbers = {"FINANCE_BATCH_SIZE": "batch_size", "FINANCE_MAX_WAIT_MS": "max_wait_ms",
               "FINANCE_LINGER_MS": "linger_ms", "FINANCE_DEDUP_RECORDS": "dedup_records",
               "FINANCE_METRICS_PORT": "metrics_port"}
    for key, name in numbers.items():
        if env.get(key):
            try:
                values[name] = int(env[key])
            except ValueError:
                raise ValueError(f"{key}={env[key]!r} is not an integer") from None
    return StreamConfig(**values)
