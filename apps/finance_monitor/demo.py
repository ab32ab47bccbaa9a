"""`demo`: the whole stream on the shipped demo news, in one command.

Ensures a sentiment model (training the demo one when there is no production model) and a
broker (starting the local one when nothing answers), then replays ``demo/news.jsonl`` into
fresh topics of this run, runs the stream until the input is quiet, and prints the alerts:
the demo news turns sharply negative on Novagen ($NOVA), which should raise its alerts.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from pathlib import Path

from apps.finance_monitor.demo_model import ensure_model
from apps.finance_monitor.follow import show_alerts
from apps.finance_monitor.replay import ReplayOptions, make_producer, messages_from_file, replay
from apps.finance_monitor.service import build_stream
from apps.finance_monitor.settings import StreamConfig, default_var_dir
from apps.finance_monitor.store import StateStore
from apps.finance_monitor.stream import ensure_topics


def ensure_broker(servers: str) -> None:
    """Start the project's local broker when nothing answers at ``servers`` (an external cluster must answer)."""
    from infra.kafka import broker
    from infra.kafka.__main__ import config_from_env, external_cluster

    if broker.answers_metadata(servers, timeout_s=3.0):
        return
    local = config_from_env()
    if external_cluster(local):
        raise RuntimeError(f"no Kafka broker answers at {servers}; check KAFKA_BOOTSTRAP_SERVERS")
    print(f"no broker at {servers}: starting the local one (`make kafka-down` or `make down` stops it)")
    broker.fetch_jars(local)
    broker.start(local)


def run_demo(config: StreamConfig, news: Path, idle_exit_s: float = 4.0) -> int:
    run = uuid.uuid4().hex[:6]
    config = replace(config, input_topic=f"finance.demo.{run}.news", scored_topic=f"finance.demo.{run}.scored",
                     alerts_topic=f"finance.demo.{run}.alerts", deadletter_topic=f"finance.demo.{run}.deadletter",
                     group_id=f"finance-demo-{run}", metrics_port=0,
                     db_path=default_var_dir() / "finance_monitor" / "demo" / f"{run}.db")
    print("== sentiment model")
    ensure_model(config)
    print(f"\n== broker at {config.bootstrap_servers}")
    ensure_broker(config.bootstrap_servers)
    processor = build_stream(config)
    print(f"model {processor.engine.model_version}; rules {config.rules_path}")

    print(f"\n== replaying {news} into {config.input_topic}")
    ensure_topics(config.bootstrap_servers, [config.input_topic], config.partitions)
    producer = make_producer(config.bootstrap_servers)
    sent = replay(producer, config.input_topic, messages_from_file(news, ReplayOptions(), processor.engine.extractor))
    producer.close()
    print(f"sent {sent} records")

    print("\n== stream (stops when the input has been quiet for a few seconds)")
    started = time.monotonic()
    results = []
    processor.run(idle_exit_s=idle_exit_s, on_batch=results.append)
    print(f"scored {sum(len(r.scored) for r in results)} messages in {time.monotonic() - started:.1f} s, "
          f"{sum(len(r.dead) for r in results)} dead-lettered, {sum(r.late for r in results)} late event(s) skipped")

    print(f"\n== alerts (history in {config.db_path}; topic {config.alerts_topic})")
    store = StateStore(config.db_path, config.group_id)
    shown = show_alerts(store)
    store.close()
    if not shown:
        print("no alerts were raised")
    print(f"\nHistory: `python -m apps.finance_monitor alerts --db {config.db_path}`; a live stream's alerts: "
          f"`python -m apps.finance_monitor alerts --follow --alerts-topic {config.alerts_topic}`.")
    return 0
