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
| ``POSTGRES_PORT`` / ``REDIS_PORT`` | ``5432`` / ``6379`` | postgres / redis (optional, on 127.0.0.1 only) |
| ``CS_TRACKER_STORE`` | ``sqlite`` | the bot's tracker store; ``postgresql`` adds the postgres service |
| ``CS_LOCK_STORE`` | ``memory`` | the bot's lock store (Rasa's in-memory one); ``redis`` adds the redis service |
| ``STACK_SERVICES`` | all | a comma-separated subset, e.g. ``kafka,recommender`` (may name postgres, redis) |

The data stores (``infra/postgres.py``, ``infra/redis_server.py``) are optional: ``make up`` runs
them only when ``CS_TRACKER_STORE`` / ``CS_LOCK_STORE`` ask for them or ``STACK_SERVICES`` names
them, and starts them before the bot. Their passwords (``POSTGRES_PASSWORD`` / ``REDIS_PASSWORD``,
default generated into ``$TEXTML_VAR_DIR/secrets/``) are never on a command line.
"""

from __future__ import annotations

import os
import pwd
import sys
from collections.abc import Callable
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
    probe: Callable[[], bool] | None = None  # a health check other than a URL (the data stores)
    address: str | None = None  # where it answers, for `make status` (default: health_url)
    user: str | None = None  # the account supervisord runs it as (servers that must not run as root)
    prepare: tuple[str, ...] = ()  # a command run before the first start (creates data, config, passwords)
    before_apps: bool = False  # started, and answering, before the apps (with Kafka)
    stop_signal: str = "TERM"

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


def _system_user(name: str) -> str | None:
    """``name`` when running as root and the account exists (a server must not run as root), else None."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(name).pw_name
    except KeyError:
        return None


def data_stores(env: dict[str, str], python: str = sys.executable) -> list[Service]:
    """PostgreSQL and Redis; supervisord runs the servers themselves, ``prepare`` writes their data and config."""
    from infra import postgres, redis_server

    _port(env, "POSTGRES_PORT", 5432)  # a bad value fails here, as a stack setting
    _port(env, "REDIS_PORT", 6379)
    var = var_dir(env)
    pg = postgres.config_from_env(env, var)
    redis = redis_server.config_from_env(env, var)
    return [
        # SIGINT: PostgreSQL's fast shutdown (SIGTERM waits for every client to disconnect)
        Service("postgres", tuple(postgres.server_command(pg)), None, needs_kafka=False, start_seconds=3,
                signatures=(("-m", "infra.postgres", "run"), (str(pg.bin / "postgres"), "-D")),
                probe=lambda: postgres.answers(pg, env), address=pg.address, user=_system_user("postgres"),
                prepare=(python, "-m", "infra.postgres", "init"), before_apps=True, stop_signal="INT"),
        Service("redis", (str(redis.binary), str(redis.config_file)), None, needs_kafka=False, start_seconds=2,
                signatures=(("-m", "infra.redis_server", "run"), (str(redis.binary), str(redis.config_file))),
                probe=lambda: redis_server.answers(redis, env), address=redis.address, user=_system_user("redis"),
                prepare=(python, "-m", "infra.redis_server", "init"), before_apps=True),
    ]


def _wanted(env: dict[str, str]) -> list[str]:
    return [name.strip() for name in env.get("STACK_SERVICES", "").split(",") if name.strip()]


def known_services(env: dict[str, str] | None = None, python: str = sys.executable) -> list[Service]:
    """Every service there is, optional ones included (for supervisord's programs and ``make down``)."""
    env = dict(os.environ if env is None else env)
    services = _core_services(env, python)
    return services[:1] + data_stores(env, python) + services[1:]


def all_services(env: dict[str, str] | None = None, python: str = sys.executable) -> list[Service]:
    """Every service ``make up`` runs, in start order (Kafka first), configured from ``env`` (default: the process
    environment): the data stores only when ``CS_TRACKER_STORE`` / ``CS_LOCK_STORE`` or ``STACK_SERVICES`` ask."""
    env = dict(os.environ if env is None else env)
    wanted = set(_wanted(env))
    if env.get("CS_TRACKER_STORE", "").strip().lower() == "postgresql":
        wanted.add("postgres")
    if env.get("CS_LOCK_STORE", "").strip().lower() == "redis":
        wanted.add("redis")
    optional = {s.name for s in data_stores(env, python)}
    return [s for s in known_services(env, python) if s.name not in optional or s.name in wanted]


def _core_services(env: dict[str, str], python: str) -> list[Service]:
    """Kafka, the finance stream, the recommender and the bot, in start order."""
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
    wanted = _wanted(env)
    unknown = sorted(set(wanted) - {s.name for s in known_services(env, python)})
    if unknown:
        raise ServiceConfigError(f"STACK_SERVICES names {unknown}, which are not services; "
                                 f"expected some of: {', '.join(s.name for s in known_services(env, python))}")
    return [s for s in services if s.name in wanted] if wanted else services
