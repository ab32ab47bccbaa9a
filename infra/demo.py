"""``make demo``: the main job on embedded defaults.

Until the apps land, it starts the stack, shows what runs, sends one message through the
broker and shows the packaged base models that core resolves offline. Each app extends it.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

from core.model_refs import PACKAGED_NAMES, ModelReferenceError, resolve_model
from infra import stack
from infra.kafka.__main__ import config_from_env, external_cluster


def kafka_round_trip(servers: str) -> float:
    """Produce one message with acks=all and read it back; returns the seconds it took."""
    from kafka import KafkaConsumer, KafkaProducer

    topic = f"demo.hello.{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    producer = KafkaProducer(bootstrap_servers=servers, acks="all")
    producer.send(topic, b"hello from make demo").get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(topic, bootstrap_servers=servers, auto_offset_reset="earliest")
    values: list[bytes] = []
    deadline = time.monotonic() + 30
    while not values and time.monotonic() < deadline:
        values = [record.value for batch in consumer.poll(timeout_ms=500).values() for record in batch]
    consumer.close()
    if values != [b"hello from make demo"]:
        raise RuntimeError(f"expected the demo message back from {topic}, got {values!r}")
    return time.monotonic() - started


def main() -> int:
    print("== starting the stack (make up)")
    if stack.up() != 0:
        return 1
    servers = external_cluster(config_from_env()) or config_from_env().bootstrap_servers
    print(f"\n== Kafka round trip on {servers}")
    print(f"produced and consumed one message in {kafka_round_trip(servers):.2f} s")

    print("\n== packaged base models (offline)")
    for name in PACKAGED_NAMES:
        try:
            resolved = resolve_model(name)
            print(f"  {name:24} {resolved.location}{'/' + resolved.gguf_file if resolved.gguf_file else ''}")
        except ModelReferenceError as error:
            print(f"  {name:24} unavailable: {error}")
    for title, module in (("finance monitor: the shipped demo news through the sentiment stream",
                           "apps.finance_monitor"),
                          ("recommender: the shipped demo catalog, recommendations with explanations",
                           "apps.recommender"),
                          ("support bot: a cited answer, the lost-card form and a hand-off", "apps.customer_service")):
        print(f"\n== {title}", flush=True)
        subprocess.run([sys.executable, "-m", module, "demo"], check=True)
    print("\nThe stack keeps running: `make status` shows it, `make down` stops it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
