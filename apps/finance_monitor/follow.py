"""`alerts`: print the committed alert history from the processor's store; ``--follow`` prints the alerts topic.

Both show committed alerts only: the store commits a batch only after its Kafka transaction did
(and restores from the ``read_committed`` changelog), and ``--follow`` reads the alerts topic with
``isolation_level="read_committed"``, so an alert of a batch whose transaction was aborted (and is
being redone) never shows, and a redone one shows once. The store holds the partitions this
processor owns or has owned; the topic holds the whole group's alerts.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import TextIO

from apps.finance_monitor.store import StateStore


def format_alert(alert: dict) -> str:
    """A few lines a person reads in a terminal: headline, figures, the evidence quoted."""
    figures = "  ".join(f"{k}={v}" for k, v in alert["figures"].items())
    lines = [f"[{alert['ts']}] {alert['ticker']:6} {alert['rule']} ({alert['window']})  model {alert['model_version']}",
             f"    {figures}"]
    lines += [f"    - {e['id']}: {e['text']}" for e in alert["evidence"]]
    return "\n".join(lines)


def show_alerts(store: StateStore, follow: bool = False, as_json: bool = False, last: int | None = None,
                poll_s: float = 1.0, out: TextIO = sys.stdout, stop: threading.Event | None = None) -> int:
    """Print the committed history (the ``last`` N, or all), then, with ``follow``, new ones as SQLite marks
    them published; returns the count."""
    stop = stop or threading.Event()
    seq = 0
    if last is not None:
        seq = max(store.last_seq() - last, 0)
    shown = 0
    while True:
        for row_seq, alert in store.alerts_after(seq, published_only=True):
            seq = row_seq
            print(json.dumps(alert) if as_json else format_alert(alert), file=out, flush=True)
            shown += 1
        if not follow or stop.wait(poll_s):
            return shown


def follow_topic(bootstrap: str, topic: str, as_json: bool = False, last: int | None = None,
                 out: TextIO = sys.stdout, stop: threading.Event | None = None, wait_s: float = 30.0) -> int:
    """Print the committed alerts of ``topic`` (each partition's ``last`` N first, else all) and then every new
    one until ``stop`` is set; returns the count. An alert id already shown is not shown again."""
    from kafka import KafkaConsumer, TopicPartition

    stop = stop or threading.Event()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             isolation_level="read_committed", client_id="finance-monitor-follow")
    shown: set[str] = set()
    try:
        deadline = time.monotonic() + wait_s
        partitions = consumer.partitions_for_topic(topic)
        while not partitions and time.monotonic() < deadline and not stop.is_set():
            stop.wait(0.5)
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise RuntimeError(f"topic {topic} does not exist (is the stream running?)")
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        if last is None:
            consumer.seek_to_beginning(*assigned)
        else:
            starts, ends = consumer.beginning_offsets(assigned), consumer.end_offsets(assigned)
            for tp in assigned:
                consumer.seek(tp, max(ends[tp] - last, starts[tp]))
        while not stop.is_set():
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    alert = json.loads(record.value)
                    if alert["alert_id"] in shown:
                        continue
                    shown.add(alert["alert_id"])
                    print(json.dumps(alert) if as_json else format_alert(alert), file=out, flush=True)
    finally:
        consumer.close()
    return len(shown)
