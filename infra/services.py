"""The long-lived services of ``make up``: what each runs, where it answers, what it waits for.

One table for the supervisor's configuration, ``make status`` and ``make down`` (which also stops
the same commands started by hand). Every service binds to 127.0.0.1 unless its app's documented
setting says otherwise; the ports come from the same variables the apps read:

| variable | default | service |
|---|---|---|
| ``KAFKA_PORT`` | ``9092`` | kafka (``infra/kafka``) |
| ``FINANCE_METRICS_PORT`` | ``9464`` | finance: Prometheus metrics, its health endpoint |
| ``RECOMMENDER_HOST`` / ``RECOMMENDER_PORT`` | ``127.0.0.1`` / ``8300`` | recommender HTTP API |
| ``CS_ACTIONS_PORT`` / ``CS_RASA_PORT`` | ``5055`` / ``5005`` | bot-actions / bot-rasa |
| ``STACK_SERVICES`` | all | a comma-separated subset, e.g. ``kafka,recommender`` |
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


class ServiceConfigError(ValueError):
    """A stack setting with a bad value (unknown service name, port out of range)."""


@dataclass(frozen=True)
class Service:
    """One supervised program: its command line, its health check and whether it needs Kafka first."""

    name: str
    command: tuple[str, ...]
    health_url: str | None  # None: Kafka, whose health is a metadata request
    needs_kafka: bool = True
    start_seconds: int = 5  # up this long counts as started (shorter exits are retried with back-off)
    # argv words, in this order, that identify the same command started by hand (any one of the tuples)
    signatures: tuple[tuple[str, ...], ...] = ()

    def matches(self, argv: list[str]) -> bool:
        """True when ``argv`` runs this service's command (whatever interpreter path and options started it)."""
        for words in self.signatures:
            rest = iter(argv)
            if all(word in rest for word in words):  # an ordered subsequence of argv
                return True
        return False


def _port(env: dict[str, str], name: str, default: int) -> int:
    value = env.get(name, str(default))
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ServiceConfigError(f"{name}={value!r} is not a TCP port; expected an integer 1..65535")
    return int(value)


def var_dir(env: dict[str, str]) -> Path:
    """Runtime state of this checkout (``TEXTML_VAR_DIR``, default ``var/``), absolute."""
    return Path(env.get("TEXTML_VAR_DIR", REPO_ROOT / "var")).resolve()


def all_services(env: dict[str, str] | None = None, python: str = sys.executable) -> list[Service]:
    """Every service in start order (Kafka first), configured from ``env`` (default: the process environment)."""
    env = dict(os.environ if env is None else env)
    finance = _port(env, "FINANCE_METRICS_PORT", 9464)
    rec_host, rec_port = env.get("RECOMMENDER_HOST", "127.0.0.1"), _port(env, "RECOMMENDER_PORT", 8300)
    actions, rasa = _port(env, "CS_ACTIONS_PORT", 5055), _port(env, "CS_RASA_PORT", 5005)
    _port(env, "KAFKA_PORT", 9092)  # checked here too, so a bad value fails before anything starts
    return [
        Service("kafka", (python, "-m", "infra.kafka", "run"), None, needs_kafka=False, start_seconds=3,
                signatures=(("-m", "infra.kafka", "run"), ("kafka.Kafka",))),
        Service("finance", (python, "-m", "apps.finance_monitor", "run", "--ensure-model"),
                f"http://127.0.0.1:{finance}/metrics", signatures=(("-m", "apps.finance_monitor", "run"),)),
        Service("recommender", (python, "-m", "apps.recommender", "--log-level", "INFO", "serve", "--host", rec_host,
                                "--port", str(rec_port), "--demo-if-empty"),
                f"http://{'127.0.0.1' if rec_host in ('0.0.0.0', '::') else rec_host}:{rec_port}/health",
                needs_kafka=False, signatures=(("-m", "apps.recommender", "serve"),)),
        Service("bot-actions", (python, "-m", "apps.customer_service", "actions"),
                f"http://127.0.0.1:{actions}/health", needs_kafka=False,
                signatures=(("-m", "apps.customer_service", "actions"),)),
        # `apps.customer_service rasa` trains if needed, then replaces itself with `rasa run` (same pid);
        # Rasa's `GET /` answers without its API token once the server is up.
        Service("bot-rasa", (python, "-m", "apps.customer_service", "rasa"), f"http://127.0.0.1:{rasa}/",
                needs_kafka=False, start_seconds=10,
                signatures=(("-m", "apps.customer_service", "rasa"), ("run", "--enable-api"))),
    ]


def selected_services(env: dict[str, str] | None = None, python: str = sys.executable) -> list[Service]:
    """The services ``STACK_SERVICES`` names (all when unset), in start order."""
    env = dict(os.environ if env is None else env)
    services = all_services(env, python)
    wanted = [name.strip() for name in env.get("STACK_SERVICES", "").split(",") if name.strip()]
    unknown = sorted(set(wanted) - {s.name for s in services})
    if unknown:
        raise ServiceConfigError(f"STACK_SERVICES names {unknown}, which are not services; "
                                 f"expected some of: {', '.join(s.name for s in services)}")
    return [s for s in services if s.name in wanted] if wanted else services
