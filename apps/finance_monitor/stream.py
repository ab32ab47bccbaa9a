"""The I/O shell around :class:`~apps.finance_monitor.engine.AlertEngine`: Kafka in, Kafka/SQLite/webhook out.

The loop (at-least-once, with alerts deduplicated by id)::

    collect a batch (at most batch_size records, at most max_wait_ms, early when input pauses)
    engine.process(batch)                     # validate, score, windows, rules (pure)
    produce scores + dead letters; flush      # acks=all: on the broker's in-sync replicas
    SQLite: window events, cooldowns, alerts, next offsets   (one transaction)
    produce the new alerts; flush; mark them published      # outbox: re-sent on restart if we die here
    commit the offsets to Kafka

A crash after the SQLite transaction and before the commit leaves the checkpoint ahead of the
committed offset; on assignment the stream seeks to the checkpoint, so no event enters a
window twice and no alert repeats. A rebalance drops the revoked partitions' state and the
new owner rebuilds it from SQLite (processors of one group share the database file).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import queue
import threading
import time
from collections.abc import Callable

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata

from apps.finance_monitor.engine import AlertEngine, BatchResult, Record, Scorer
from apps.finance_monitor.metrics import StreamMetrics
from apps.finance_monitor.settings import StreamConfig
from apps.finance_monitor.store import AlertStore
from apps.finance_monitor.webhook import WebhookSink

log = logging.getLogger(__name__)


class BrokerUnavailableError(RuntimeError):
    """No broker answered at the bootstrap servers in time."""


STALL_CHECK_S = 5.0  # idle seconds between checks that the consumer is not stuck behind unread records
TRIM_INTERVAL_S = 2.0  # seconds between returns of freed heap to the OS
COMMIT_RETRY_S = 1.0  # idle seconds between retries of a refused offset commit
REBALANCE_POLL_MS = 200  # least poll timeout while a rebalance is under way (JoinGroup + SyncGroup take ms)


def ensure_topics(bootstrap: str, topics: list[str], partitions: int, wait_s: float = 120.0) -> None:
    """Create missing topics (``partitions`` each, replication 1); existing ones are left as they are.

    Waits up to ``wait_s`` for the broker: under `make up` the stream starts alongside it.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="finance-monitor-admin",
                                     bootstrap_timeout_ms=5000)
            break
        except KafkaError:
            if time.monotonic() > deadline:
                raise BrokerUnavailableError(f"no Kafka broker answered at {bootstrap} within {wait_s:.0f} s; "
                                             "start one with `make kafka-up` or set KAFKA_BOOTSTRAP_SERVERS") from None
            log.info("waiting for the Kafka broker at %s", bootstrap)
            time.sleep(2.0)
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(t, partitions, 1) for t in topics if t not in existing]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


class _Rebalance(ConsumerRebalanceListener):
    """Queues partition changes for the stream's own thread.

    kafka-python 3 calls rebalance listeners on its IO thread, concurrently with the stream's
    loop (and blocking heartbeats and fetches while they run); the window state, the pending
    batch and the SQLite connection belong to the loop, so the listener only hands the change over.
    """

    def __init__(self, changes: queue.SimpleQueue) -> None:
        self.changes = changes

    def on_partitions_revoked(self, revoked):
        self.changes.put(("revoked", list(revoked)))

    def on_partitions_assigned(self, assigned):
        self.changes.put(("assigned", list(assigned)))


class StreamProcessor:
    """Runs the stream until ``stop`` is set (SIGTERM sets it) or, with ``idle_exit_s``, the input is quiet."""

    def __init__(self, config: StreamConfig, engine: AlertEngine, scorer: Scorer,
                 metrics: StreamMetrics | None = None) -> None:
        self.config = config
        self.engine = engine
        self.scorer = scorer
        self.metrics = metrics or StreamMetrics()
        self.stop = threading.Event()
        self._pending: list = []
        self._rewind: dict[tuple[str, int], int] = {}  # revoked partition -> first fetched, unprocessed offset
        self._uncommitted: dict[tuple[str, int], int] = {}  # durable in SQLite, not yet committed to Kafka
        self._last_commit_try = 0.0
        self._refused_commits = 0  # in a row
        self._rebalances: queue.SimpleQueue = queue.SimpleQueue()  # from the listener on kafka-python's IO thread
        self._seen_records = False
        self._last_trim = 0.0
        self.consumer: KafkaConsumer | None = None
        self.producer: KafkaProducer | None = None
        self.store: AlertStore | None = None

    # -- rebalance ---------------------------------------------------------------------------

    def on_revoked(self, partitions) -> None:
        """Drop the revoked partitions' state and their fetched-but-unprocessed records.

        The first unprocessed offset of each is remembered: kafka-python 3 keeps a partition's
        fetch position when the same consumer gets it back (``assign_from_subscribed``), so
        without a seek the dropped records would be skipped for good.
        """
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self._drop_pending(gone, self._rewind)
        for partition in gone:
            self.engine.drop(partition)
            self._uncommitted.pop(partition, None)  # the next owner commits it from the checkpoint
        log.info("partitions revoked: %s", sorted(gone))

    def on_assigned(self, partitions) -> None:
        """Restore each partition's window state and position it at the next unprocessed offset.

        The SQLite checkpoint is authoritative (it may be ahead of the committed offset, or moved
        on by another processor of the group); without one, rewind to the first record dropped at
        revocation or fetched before this assignment was applied; otherwise the consumer's own
        position (committed offset or reset) stands.
        """
        rewind, self._rewind = self._rewind, {}
        assigned = {(tp.topic, tp.partition) for tp in partitions}
        self._drop_pending(assigned, rewind)  # fetched from kafka-python's position before the seeks below
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self.engine.partitions[key] = self.store.load_partition(tp.topic, tp.partition, self.engine)
            checkpoint = self.store.checkpoint(tp.topic, tp.partition)
            if checkpoint is not None:
                self.consumer.seek(tp, checkpoint)
                self._uncommitted[key] = checkpoint  # Kafka's offset may lag it (a refused or lost commit)
            elif key in rewind:
                self.consumer.seek(tp, rewind[key])
        log.info("partitions assigned: %s", sorted(assigned))

    def _drop_pending(self, partitions: set[tuple[str, int]], rewind: dict[tuple[str, int], int]) -> None:
        """Remove the pending records of ``partitions``, noting each partition's first dropped offset in ``rewind``."""
        for record in self._pending:
            key = (record.topic, record.partition)
            if key in partitions:
                rewind[key] = min(record.offset, rewind.get(key, record.offset))
        self._pending = [r for r in self._pending if (r.topic, r.partition) not in partitions]

    def _apply_rebalances(self) -> bool:
        """Apply the partition changes the listener queued, in order; True when there were any."""
        applied = False
        while True:
            try:
                kind, partitions = self._rebalances.get_nowait()
            except queue.Empty:
                return applied
            applied = True
            if kind == "revoked":
                self.on_revoked(partitions)
            else:
                self.on_assigned(partitions)

    # -- the loop ----------------------------------------------------------------------------

    def run(self, idle_exit_s: float | None = None, on_batch: Callable[[BatchResult], None] | None = None) -> None:
        config = self.config
        ensure_topics(config.bootstrap_servers, [config.input_topic, config.scored_topic, config.alerts_topic,
                                                 config.deadletter_topic], config.partitions)
        self.store = AlertStore(config.db_path, config.group_id)
        self.producer = KafkaProducer(bootstrap_servers=config.bootstrap_servers, acks="all", linger_ms=5,
                                      retries=10, retry_backoff_ms=200, max_in_flight_requests_per_connection=1)
        self.consumer = KafkaConsumer(bootstrap_servers=config.bootstrap_servers, group_id=config.group_id,
                                      enable_auto_commit=False, auto_offset_reset="earliest",
                                      max_poll_records=config.batch_size, client_id="finance-monitor")
        webhook = None
        if config.webhook_url:
            webhook = WebhookSink(config.webhook_url, config.db_path, config.group_id, config.webhook_retries,
                                  config.webhook_backoff_s, on_failure=self.metrics.webhook_failures.inc)
            webhook.start()
        try:
            self._publish_outbox()
            self._wait_for_metadata(config.input_topic)
            self.consumer.subscribe([config.input_topic], listener=_Rebalance(self._rebalances))
            self.metrics.ready.set(1)
            last_records = time.monotonic()
            last_stall_check = time.monotonic()
            while not self.stop.is_set():
                batch = self._collect()
                if not batch and self._uncommitted and time.monotonic() - self._last_commit_try > COMMIT_RETRY_S:
                    self._commit()
                if not batch:
                    if idle_exit_s is not None and time.monotonic() - last_records > idle_exit_s:
                        log.info("no input for %.0f s: stopping", idle_exit_s)
                        break
                    if time.monotonic() - last_stall_check > STALL_CHECK_S:
                        last_stall_check = time.monotonic()
                        self._rejoin_if_stalled(config.input_topic)
                    continue
                last_records = time.monotonic()
                result = self._handle(batch, webhook)
                if on_batch is not None:
                    on_batch(result)
            self._commit()  # a stop or idle exit: a refused commit gets a last try before the group is left
        finally:
            self.metrics.ready.set(0)
            if webhook is not None:
                webhook.stop()
                webhook.join(timeout=10)
            self.consumer.close(autocommit=False)
            self.producer.close(timeout=10)
            self.store.close()
            log.info("stream stopped")

    def _rejoin_if_stalled(self, topic: str) -> None:
        """Re-subscribe when assigned partitions have unread records but polls return none.

        A safety net against a consumer that stopped fetching a partition: the stalls first
        seen here came from the stream's own rebalance handling (fixed: see on_revoked), but
        kafka-python 3.0.x reports similar ones (dpkp/kafka-python#3131). Re-subscribing forces a
        rebalance, whose handling restores state and seeks to the checkpoints as on any other.
        """
        assigned = list(self.consumer.assignment())
        if not assigned:
            return
        ends = self.consumer.end_offsets(assigned)
        behind = {tp: ends[tp] - self.consumer.position(tp) for tp in assigned
                  if ends.get(tp) is not None and ends[tp] > self.consumer.position(tp)}
        if behind:
            log.warning("no records fetched although %d partition(s) have unread records (%s): re-joining the group",
                        len(behind), {f"{tp.topic}[{tp.partition}]": lag for tp, lag in behind.items()})
            self.consumer.unsubscribe()
            self.consumer.subscribe([topic], listener=_Rebalance(self._rebalances))

    def _wait_for_metadata(self, topic: str, timeout_s: float = 60.0) -> None:
        """Subscribe only once the consumer sees the topic's partitions: a group assignment computed before the
        metadata of a just-created topic arrived would be empty until the next metadata refresh (minutes)."""
        deadline = time.monotonic() + timeout_s
        while not self.consumer.partitions_for_topic(topic):
            if time.monotonic() > deadline:
                raise BrokerUnavailableError(f"topic {topic} has no partitions after {timeout_s:.0f} s")
            time.sleep(0.2)

    def _collect(self) -> list:
        """Up to batch_size records: waits at most max_wait_ms, and once records arrived stops as soon as no
        more come for linger_ms. A backlog still fills whole batches; a light load is not held back waiting."""
        self._pending = []
        deadline = time.monotonic() + self.config.max_wait_ms / 1000.0
        while len(self._pending) < self.config.batch_size and not self.stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            wait_ms = int(1000 * (min(remaining, self.config.linger_ms / 1000.0) if self._pending else remaining))
            if self._finish_rebalance():
                wait_ms = max(wait_ms, REBALANCE_POLL_MS)  # nothing is fetched meanwhile; let the join complete
            polled = self.consumer.poll(timeout_ms=max(wait_ms, 1),
                                        max_records=self.config.batch_size - len(self._pending))
            arrived = 0
            for records in polled.values():
                self._pending.extend(records)
                arrived += len(records)
            self._apply_rebalances()  # drops what this poll returned from partitions that moved meanwhile
            if self._pending and not arrived:
                break
        if self._pending and not self._seen_records:
            self._seen_records = True
            self.metrics.first_record.set(time.time())
        return self._pending

    def _finish_rebalance(self) -> bool:
        """True while a rebalance is under way; makes kafka-python finish one that a poll timeout stranded.

        kafka-python 3.0.12 runs JoinGroup + SyncGroup as a task that ``poll`` awaits only while the
        coordinator's ``need_rejoin()`` holds, and applies the result (member state, heartbeats, the
        assignment and its listener call) only when a poll consumes that task. A leader that rejoins
        because its metadata snapshot changed (right after start-up on a new topic) stops needing to
        rejoin inside the task itself, so when the poll that started it timed out first (a 5 ms linger
        poll, a loaded machine) no later poll consumes it: the member stays "rebalancing" with its
        partitions revoked and heartbeats off, fetches nothing, never gets its assignment, and the
        coordinator evicts it after the session timeout. Requesting a rejoin makes the next poll finish
        (or redo) the join; the caller then polls long enough for it to complete.
        """
        coordinator = getattr(self.consumer, "_coordinator", None)
        if not getattr(coordinator, "rejoining", False):
            return False
        if not coordinator.need_rejoin():
            log.info("kafka-python left a rebalance unfinished after a poll timed out: finishing it")
            coordinator.request_rejoin()
        return True

    def _handle(self, batch: list, webhook: WebhookSink | None) -> BatchResult:
        started = time.monotonic()
        config, metrics = self.config, self.metrics
        records = [Record(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp) for r in batch]
        result = self.engine.process(records, self.scorer)
        self._produce([(config.scored_topic, key, value) for key, value in result.scored]
                      + [(config.deadletter_topic, key, value) for key, value in result.dead])
        new_alerts = self.store.write_batch(result, self.engine.rules.longest_window_s, webhook is not None)
        for alert in new_alerts:
            log.warning("ALERT %s", alert.summary())
        self._produce([(config.alerts_topic, a.alert_id.encode(), a.to_dict()) for a in new_alerts])
        self.store.mark_published(a.alert_id for a in new_alerts)
        if new_alerts and webhook is not None:
            webhook.wake.set()
        self._uncommitted.update(result.offsets)
        self._commit()
        now = time.time()
        metrics.consumed.inc(len(batch))
        metrics.scored.inc(len(result.scored))
        metrics.late.inc(result.late)
        for _, dead in result.dead:
            metrics.dead_letters.labels(dead["reason"]).inc()
        for alert in new_alerts:
            metrics.alerts.labels(alert.rule).inc()
        for record in batch:
            metrics.record_latency.observe(max(now - record.timestamp / 1000.0, 0.0))
        for (topic, part), offset in result.offsets.items():
            end = self.consumer.highwater(TopicPartition(topic, part))
            if end is not None:
                metrics.lag.labels(str(part)).set(max(end - offset, 0))
        metrics.batch_latency.observe(time.monotonic() - started)
        if time.monotonic() - self._last_trim >= TRIM_INTERVAL_S:
            self._last_trim = time.monotonic()
            _release_free_heap()
        return result

    def _commit(self) -> bool:
        """Commit the offsets whose outcome is durable in SQLite but not yet in Kafka; True when none are left.

        A refused commit (the group is rebalancing, or the coordinator evicted this member while the
        machine was starved) is kept and retried from the loop once the next poll has rejoined the group.
        A revocation hands the partition to its next owner, which commits the checkpoint it seeks to.
        Without this the group's offset stayed behind for good when no further input arrived.
        """
        if not self._uncommitted:
            return True
        self._last_commit_try = time.monotonic()
        pending = dict(self._uncommitted)
        try:
            self.consumer.commit({TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in pending.items()})
        except KafkaError as error:  # CommitFailedError, RebalanceInProgressError, a timeout
            self._refused_commits += 1
            (log.warning if self._refused_commits == 1 else log.debug)(
                "offset commit refused (%r); kept for a retry once the group has settled", error)
            return False
        if self._refused_commits:
            log.info("offsets committed after %d refused attempt(s)", self._refused_commits)
            self._refused_commits = 0
        for key, offset in pending.items():
            if self._uncommitted.get(key) == offset:
                del self._uncommitted[key]
        return not self._uncommitted

    def _produce(self, messages: list[tuple[str, bytes | None, dict]], attempts: int = 3) -> None:
        """Send and wait for every broker acknowledgement; resend what failed, then raise.

        ``flush`` alone does not report failed sends; an unacknowledged record must stop the batch
        before its offsets are committed (the process exits, and a restart redoes the batch).
        """
        for attempt in range(1, attempts + 1):
            futures = [(self.producer.send(topic, key=key, value=_json(value)), (topic, key, value))
                       for topic, key, value in messages]
            self.producer.flush()
            failed = [(message, future.exception) for future, message in futures if future.failed()]
            if not failed:
                return
            log.warning("%d of %d record(s) not acknowledged (attempt %d): %s", len(failed), len(messages), attempt,
                        failed[0][1])
            messages = [message for message, _ in failed]
            time.sleep(0.5 * attempt)
        raise KafkaError(f"{len(messages)} record(s) were not acknowledged after {attempts} attempts: {failed[0][1]}")

    def _publish_outbox(self) -> None:
        """Alerts written to SQLite but not yet produced (the last run died in between)."""
        leftovers = self.store.unpublished()
        if leftovers:
            self._produce([(self.config.alerts_topic, a["alert_id"].encode(), a) for a in leftovers])
            self.store.mark_published(a["alert_id"] for a in leftovers)
            log.info("published %d alert(s) left over from the last run", len(leftovers))


def _load_malloc_trim():
    libc = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(libc).malloc_trim if libc else None
    except (OSError, AttributeError):  # not glibc
        return None


_MALLOC_TRIM = _load_malloc_trim()


def _release_free_heap() -> None:
    """Hand freed heap pages back to the OS (glibc only).

    Batches of different lengths leave torch's and the tokenizer's freed buffers scattered over
    glibc's per-thread arenas; without a trim the stream's resident size crept from about 1.2 to
    over 1.5 GB in `make bench-stream`. A trim costs milliseconds: the loop calls it every
    TRIM_INTERVAL_S, not every batch.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _json(value: dict) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
