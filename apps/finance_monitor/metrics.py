"""Prometheus metrics of the stream, in their own registry, served as text on a local port."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class StreamMetrics:
    """Counters and histograms the processor updates; :meth:`serve` exposes them (``/metrics``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.consumed = Counter("finance_consumed", "input records consumed", registry=r)
        self.scored = Counter("finance_scored", "messages scored", registry=r)
        self.alerts = Counter("finance_alerts", "new alerts raised", ["rule"], registry=r)
        self.dead_letters = Counter("finance_dead_letters", "records sent to the dead-letter topic", ["reason"],
                                    registry=r)
        self.late = Counter("finance_late_events", "events older than the ticker's released ones, skipped",
                            registry=r)
        self.duplicates = Counter("finance_duplicates", "messages whose id the partition had already scored, skipped",
                                  registry=r)
        self.aborted = Counter("finance_aborted_batches", "batches whose Kafka transaction was aborted and redone",
                               registry=r)
        self.webhook_failures = Counter("finance_webhook_failures", "failed webhook attempts", registry=r)
        self.batch_latency = Histogram("finance_batch_seconds", "time to process, write and commit one batch",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.record_latency = Histogram("finance_record_latency_seconds",
                                        "record produce time (Kafka timestamp) to offset committed",
                                        buckets=LATENCY_BUCKETS, registry=r)
        self.lag = Gauge("finance_consumer_lag", "records behind the partition's end", ["partition"], registry=r)
        self.ready = Gauge("finance_ready", "1 once the model is loaded and the consumer subscribed", registry=r)
        self.first_record = Gauge("finance_first_record_timestamp_seconds",
                                  "unix time this process received its first record", registry=r)
        self._server = None

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        if port:
            self._server, _ = start_http_server(port, addr=host, registry=self.registry)
            log.info("metrics on http://%s:%d/metrics", host, port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
