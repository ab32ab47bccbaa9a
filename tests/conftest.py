"""Shared fixtures: a real Kafka broker owned by the test session.

The session starts its own broker (port ``TEST_KAFKA_PORT``, default 19092, data in a temp
folder) so that tests never touch a developer's ``make up`` broker, and stops it at the end.
Set ``TEST_KAFKA_BOOTSTRAP_SERVERS`` to run the Kafka tests against an existing cluster
instead; tests that restart the broker are skipped then.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from infra.kafka import broker

REPO_ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if {"kafka_broker", "kafka_bootstrap"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[broker.BrokerConfig | None]:
    """The test broker's config (None when tests run against an external cluster)."""
    if os.environ.get("TEST_KAFKA_BOOTSTRAP_SERVERS"):
        yield None
        return
    port = int(os.environ.get("TEST_KAFKA_PORT", "19092"))
    state = tmp_path_factory.mktemp("kafka")
    config = replace(
        broker.BrokerConfig(),
        port=port,
        controller_port=port + 1,
        state_dir=state / "node",
        log_file=REPO_ROOT / "var" / "log" / "kafka-test.log",
        pid_file=state / "kafka.pid",
    )
    broker.fetch_jars(config)
    broker.start(config)
    try:
        yield config
    finally:
        broker.stop(config)


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: broker.BrokerConfig | None) -> str:
    return os.environ.get("TEST_KAFKA_BOOTSTRAP_SERVERS") or kafka_broker.bootstrap_servers


@pytest.fixture(scope="session")
def datastore_binaries() -> None:
    """PostgreSQL and Redis from Debian's packages, installed when missing (skips only when apt cannot)."""
    from tests.infra.datastore_servers import install_or_skip

    install_or_skip()
