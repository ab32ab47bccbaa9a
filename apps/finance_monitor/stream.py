"""The I/O shell around :class:`~apps.finance_monitor.engine.AlertEngine`: Kafka in, Kafka/SQLite/webhook out.

The loop, exactly-once: a batch's scores, dead letters, alerts, state changes (changelog records)
and input offsets are one Kafka transaction, so a ``read_committed`` reader sees all of a batch or
nothing of it, and the changelog always matches the group's committed offsets::

    collect a batch (at most batch_size records, at most max_wait_ms, early when input pauses)
    engine.process(batch)                 # validate, drop repeated ids, score, windows, rules (pure)
    begin the transaction; send scores + dead letters
    stage the batch in the local store (SQLite transaction left open) -> its changelog records
    send the alerts and the changelog records
    send the input offsets with the consumer's group metadata (KIP-447); commit the transaction
    commit SQLite, with the changelog offset it now reflects

State is per input partition and lives in this processor's local store (``store.py``), backed by
the compacted topic ``<group>-state-changelog`` (``changelog.py``), partition for partition. When a
partition is assigned, its state is brought up to date from the changelog before any record is
processed: from the local store's changelog position when it has one (a restart reads only the
tail), else from the changelog's start (a partition that moved from another processor, on any
host). Nothing is shared between processors but Kafka.

SQLite commits *after* Kafka, so the local store is never ahead of the committed state: a crash
between the two commits leaves it behind, and the restore reads the missing changelog tail. A
failed transaction rolls SQLite back, aborts, and the batch's partitions are restored again and
read from the committed offsets. When the changelog holds less than the committed offsets cover
(the topic was deleted: it is recreated empty), the state is rebuilt by re-reading the input from
its earliest retained offset up to the committed offset for the state only (a warning says how far
back that goes), then processing carries on.

The transactional id is ``<group>.<instance id>`` (see ``instance.py``): stable across restarts,
one per running processor; the group metadata sent with the offsets fences a processor whose
partitions moved to another member.
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
from kafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata

from apps.finance_monitor.changelog import (
    ChangelogError,
    ChangelogReader,
    encode,
    ensure_changelog,
    forbid_auto_creation,
    restore_partition,
)
from apps.finance_monitor.engine import AlertEngine, BatchResult, Record, Scorer
from apps.finance_monitor.instance import StoreLock, default_instance_id, transactional_id
from apps.finance_monitor.metrics import StreamMetrics
from apps.finance_monitor.settings import StreamConfig
from apps.finance_monitor.store import StaleStateError, StateStore
from apps.finance_monitor.webhook import WebhookSink

log = logging.getLogger(__name__)


class BrokerUnavailableError(RuntimeError):
    """No broker answered at the bootstrap servers in time."""


STALL_CHECK_S = 5.0  # idle seconds between checks that the consumer is not stuck behind unread records
TRIM_INTERVAL_S = 2.0  # seconds between returns of freed heap to the OS
REBALANCE_POLL_MS = 200  # least poll timeout while a rebalance is under way (JoinGroup + SyncGroup take ms)
# A transaction spans only the sends and commits of one batch (scoring happens before it begins), so it
# takes well under a second; the broker aborts one left open by a dead processor after this long
# (sooner when a processor with the same transactional id starts). Kafka Streams uses 10 s.
TRANSACTION_TIMEOUT_MS = 30_000
MAX_ABORTS = 5  # batches in a row whose transaction failed before the processor gives up (and exits)
MAX_BLOCK_MS = 15_000  # a send to a topic without metadata (the changelog was deleted) fails after this long
BROKER_DEFAULT = -1  # replication factor: the broker's default.replication.factor (KIP-464)
FLUSH_TIMEOUT_S = 30.0  # a batch's records not acknowledged by then fail the batch (it is aborted and redone)

def ensure_topics(bootstrap: str, topics: list[str], partitions: int, wait_s: float = 120.0) -> None:
    """Create missing topics (``partitions`` each, the broker's default replication: 1 on one broker, 3 on the
    local cluster); existing ones are left as they are.

    Waits up to ``wait_s`` for the broker: under `make up` the stream starts alongside it.
    """
    deadline = time.monotonic() + wait_s
    waiting_since = None
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="finance-monitor-admin",
                                     bootstrap_timeout_ms=5000)
            break
        except KafkaError:
            if time.monotonic() > deadline:
                raise BrokerUnavailableError(f"no Kafka broker answered at {bootstrap} within {wait_s:.0f} s; "
                                             "start one with `make kafka-up` or set KAFKA_BOOTSTRAP_SERVERS") from None
            if waiting_since is None:
                waiting_since = time.monotonic()
                log.warning("no Kafka broker answers at %s yet: waiting up to %.0f s for it (start one with "
                            "`make kafka-up`, or set KAFKA_BOOTSTRAP_SERVERS)", bootstrap, wait_s)
            else:
                log.info("still waiting for the Kafka broker at %s (%.0f s)", bootstrap,
                         time.monotonic() - waiting_since)
            time.sleep(2.0)
    if waiting_since is not None:
        log.info("the Kafka broker at %s answers after %.0f s", bootstrap, time.monotonic() - waiting_since)
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(t, partitions, BROKER_DEFAULT) for t in topics if t not in existing]
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
        self._aborts = 0  # batches in a row whose transaction failed
        self._rebalances: queue.SimpleQueue = queue.SimpleQueue()  # from the listener on kafka-python's IO thread
        self._seen_records = False
        self._last_trim = 0.0
        self.transactional_id: str | None = None
        self.consumer: KafkaConsumer | None = None
        self.producer: KafkaProducer | None = None
        self.store: StateStore | None = None
        self.admin: KafkaAdminClient | None = None
        self.reader: ChangelogReader | None = None
        self.changelog_id: str | None = None  # the changelog topic's id (a recreated topic has a new one)
        self.partition_count = config.partitions  # of the input topic, read at start

    # -- rebalance ---------------------------------------------------------------------------

    def on_revoked(self, partitions) -> None:
        """Drop the revoked partitions' state and their fetched-but-unprocessed records."""
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self._drop_pending(gone)
        for partition in gone:
            self.engine.drop(partition)
        log.info("partitions revoked: %s", sorted(gone))

    def on_assigned(self, partitions) -> None:
        """Restore each partition's state from the changelog and seek to the group's committed offset.

        The committed offset is read first, with ``require_stable``: a transaction of the partition's
        previous owner that is still completing is waited for, so its changelog records are in what the
        restore reads. The changelog's applied mark then equals the committed offset (one transaction
        writes both). When it is behind (the changelog was lost), the records in between are re-read for
        the state only. Always seeking matters: kafka-python 3 keeps a partition's fetch position when
        the same consumer gets it back, which would skip records fetched but not processed before.
        """
        assigned = {(tp.topic, tp.partition) for tp in partitions}
        self._drop_pending(assigned)  # fetched from kafka-python's position before the seeks below
        if partitions:
            self._ensure_changelog()
        for tp in partitions:
            key = (tp.topic, tp.partition)
            committed = self.consumer.committed(tp)
            started = time.monotonic()
            restored = restore_partition(self.store, self.reader, self.changelog_id, tp.topic, tp.partition)
            state = self.engine.partitions[key] = self.store.load_partition(tp.topic, tp.partition, self.engine)
            log.info("%s[%d]: restored from the changelog (%d record(s) read in %.2f s; state at offset %s, "
                     "committed %s)", tp.topic, tp.partition, restored, time.monotonic() - started, state.applied,
                     committed)
            if committed is not None and (state.applied or 0) < committed:
                self._rebuild(tp, state, committed)
            elif committed is None:
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, committed)
                if state.applied is not None and committed < state.applied:
                    log.info("%s[%d]: offsets %d to %d are in the state but were not committed to Kafka: redoing "
                             "their outputs", tp.topic, tp.partition, committed, state.applied - 1)
        log.info("partitions assigned: %s", sorted(assigned))

    def _rebuild(self, tp: TopicPartition, state, committed: int) -> None:
        """The changelog holds less than the committed offset covers: re-read the input for the state only."""
        earliest = self.consumer.beginning_offsets([tp])[tp]
        start = max(state.applied or 0, earliest)
        since = self.reader.first_timestamp(tp.topic, tp.partition, start)
        log.warning("%s[%d]: the changelog %s holds the state up to offset %s but the group committed %d: rebuilding "
                    "the state by re-reading the input from offset %d (the earliest retained is %d, written %s) to %d "
                    "(%d record(s), state only, no output)%s", tp.topic, tp.partition, self.reader.topic,
                    state.applied, committed, start, earliest,
                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since)) if since else "at an unknown time",
                    committed - 1, max(committed - start, 0),
                    "; records before the earliest retained offset are lost to the state" if earliest > 0 and
                    (state.applied or 0) < earliest else "")
        state.rebuild_until = committed
        self.consumer.seek(tp, start)

    def _ensure_changelog(self) -> None:
        """Create the changelog topic when it is missing (first start, or deleted), and note its id."""
        topic_id, created = ensure_changelog(self.admin, self.reader.topic, self.partition_count)
        if created:
            log.warning("the changelog topic %s was missing: created it (compacted, %d partitions); partitions "
                        "with committed offsets rebuild their state from the input", self.reader.topic,
                        self.partition_count)
        self.changelog_id = topic_id

    def _drop_pending(self, partitions: set[tuple[str, int]]) -> None:
        """Remove the pending records of ``partitions`` (they are fetched again from the committed offset)."""
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
        """Process batches until stopped; ``on_batch`` gets each batch whose transaction committed."""
        config = self.config
        ensure_topics(config.bootstrap_servers, [config.input_topic, config.scored_topic, config.alerts_topic,
                                                 config.deadletter_topic], config.partitions)
        lock = StoreLock(config.db_path)
        lock.acquire()
        self.store = StateStore(config.db_path, config.group_id)
        self.transactional_id = transactional_id(config.group_id,
                                                 config.instance_id or default_instance_id(config.db_path))
        webhook = None
        try:
            self.admin = KafkaAdminClient(bootstrap_servers=config.bootstrap_servers,
                                          client_id="finance-monitor-admin")
            self.partition_count = len(self.admin.describe_topics([config.input_topic])[0]["partitions"])
            self.reader = ChangelogReader(config.bootstrap_servers, config.changelog_topic)
            self._ensure_changelog()
            # Fences an earlier incarnation of this instance and aborts the transaction it left open,
            # before the consumer reads the committed offsets.
            self.producer = self._new_producer()
            log.info("transactional id %s", self.transactional_id)
            self.consumer = KafkaConsumer(bootstrap_servers=config.bootstrap_servers, group_id=config.group_id,
                                          enable_auto_commit=False, auto_offset_reset="earliest",
                                          isolation_level="read_committed", max_poll_records=config.batch_size,
                                          client_id="finance-monitor")
            if config.webhook_url:
                webhook = WebhookSink(config.webhook_url, config.db_path, config.group_id, config.webhook_retries,
                                      config.webhook_backoff_s, on_failure=self.metrics.webhook_failures.inc)
                webhook.start()
            self._wait_for_metadata(config.input_topic)
            self.consumer.subscribe([config.input_topic], listener=_Rebalance(self._rebalances))
            self.metrics.ready.set(1)
            last_records = time.monotonic()
            last_stall_check = time.monotonic()
            while not self.stop.is_set():
                batch = self._collect()
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
                if result is not None and on_batch is not None:
                    on_batch(result)
        finally:
            self.metrics.ready.set(0)
            if webhook is not None:
                webhook.stop()
                webhook.join(timeout=10)
            if self.consumer is not None:
                self.consumer.close(autocommit=False)
            if self.producer is not None:
                self.producer.close(timeout=10)
            for client in (self.reader, self.admin):
                if client is not None:
                    client.close()
            self.store.close()
            lock.release()
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

    def _handle(self, batch: list, webhook: WebhookSink | None) -> BatchResult | None:
        """Process and commit one batch; None when its transaction was aborted (its records are redone)."""
        started = time.monotonic()
        metrics = self.metrics
        records = [Record(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp) for r in batch]
        result = self.engine.process(records, self.scorer)
        try:
            new_alerts = self._transact(result, webhook is not None)
        except (KafkaError, StaleStateError) as error:
            self._abort(error, result)
            return None
        self._aborts = 0
        for alert in new_alerts:
            log.warning("ALERT %s", alert.summary())
        if new_alerts and webhook is not None:
            webhook.wake.set()
        now = time.time()
        metrics.consumed.inc(len(batch))
        metrics.scored.inc(len(result.scored))
        metrics.late.inc(result.late)
        metrics.duplicates.inc(result.duplicates)
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

    def _transact(self, result: BatchResult, webhook: bool) -> list:
        """Write the batch: one Kafka transaction with its outputs, changelog records and offsets, then SQLite.

        Returns the new alerts. Raises KafkaError (a send not acknowledged, the offsets refused after a
        rebalance, no broker) or StaleStateError, with SQLite rolled back; the caller aborts.
        """
        config, producer, store = self.config, self.producer, self.store
        producer.begin_transaction()
        futures = self._send([(config.scored_topic, key, value) for key, value in result.scored]
                             + [(config.deadletter_topic, key, value) for key, value in result.dead])
        new_alerts, changes = store.stage_batch(result, self.engine.rules.longest_window_s, webhook,
                                                config.dedup_records)
        try:
            alerts = {alert.alert_id: alert.to_dict() for alert in result.alerts}
            for stored in store.alerts_raised(result.redone):  # raised the first time these records were seen
                alerts.setdefault(stored["alert_id"], stored)
            futures += self._send([(config.alerts_topic, alert_id.encode(), body)
                                   for alert_id, body in alerts.items()])
            logged = {partition: [self._log_change(partition[1], change) for change in partition_changes]
                      for partition, partition_changes in changes.items()}
            producer.flush(timeout=FLUSH_TIMEOUT_S)  # raises KafkaTimeoutError rather than hang on a lost topic
            failed = [future for future in futures + [f for fs in logged.values() for f in fs] if future.failed()]
            if failed:  # flush does not raise for records the broker refused
                raise KafkaError(f"{len(failed)} record(s) were not acknowledged: {failed[0].exception!r}")
            if result.offsets:  # none while the whole batch rebuilds state
                offsets = {TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in result.offsets.items()}
                producer.send_offsets_to_transaction(offsets, self.consumer.group_metadata())
            self._commit_transaction()
        except BaseException:
            store.rollback()
            raise
        store.commit(self.changelog_id, {partition: max(f.value.offset for f in fs) + 1
                                         for partition, fs in logged.items() if fs})
        return new_alerts

    def _commit_transaction(self) -> None:
        self.producer.commit_transaction()

    def _new_producer(self) -> KafkaProducer:
        """The transactional producer, initialised: any transaction left open under this id is aborted.

        No topic auto-creation: a deleted changelog must fail the batch (and be recreated compacted),
        not come back as an ordinary topic.
        """
        producer = KafkaProducer(bootstrap_servers=self.config.bootstrap_servers,
                                 transactional_id=self.transactional_id, enable_idempotence=True,
                                 acks="all", linger_ms=5, retries=10, retry_backoff_ms=200,
                                 transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
                                 allow_auto_create_topics=False, max_block_ms=MAX_BLOCK_MS)
        forbid_auto_creation(producer._metadata)
        producer.init_transactions()
        return producer

    def _abort(self, error: BaseException, result: BatchResult) -> None:
        """Abort the batch's transaction and rewind its partitions to their committed offsets (redo).

        An abort that fails too (the broker timed the transaction out and fenced this producer's epoch,
        as when a send hung on a deleted changelog) closes the producer and starts a new one under the
        same transactional id, whose initialisation aborts the transaction. No other live processor
        holds this id (one id per store, one processor per store), so this fences nobody else. After
        MAX_ABORTS batches in a row the error propagates and the process exits.
        """
        self._aborts += 1
        self.metrics.aborted.inc()
        log.warning("batch of %s not committed (%r): aborting its transaction and redoing it",
                    {f"{t}[{p}]": o for (t, p), o in result.offsets.items()}, error)
        try:
            if isinstance(error, (KafkaTimeoutError, ChangelogError)):
                # Sends to a deleted topic keep kafka-python's transaction busy (AddPartitionsToTxn retried
                # without end), and abort_transaction would wait for it forever.
                raise error
            self.producer.abort_transaction()
        except KafkaError as fatal:
            if self._aborts > MAX_ABORTS:
                raise fatal from error
            log.warning("the transaction could not be aborted (%r): starting a new producer under the same "
                        "transactional id, which aborts it", fatal)
            self.producer.close(timeout=5)
            self.producer = self._new_producer()
        if self._aborts > MAX_ABORTS:
            raise KafkaError(f"{self._aborts} batches in a row could not be committed; last: {error!r}") from error
        assigned = self.consumer.assignment()
        self.on_assigned([tp for tp in (TopicPartition(t, p) for t, p in result.applied_before) if tp in assigned])
        time.sleep(min(0.2 * self._aborts, 2.0))

    def _log_change(self, partition: int, change):
        """One changelog record, to the changelog partition of the input partition's number."""
        key, value = encode(change)
        try:
            return self.producer.send(self.config.changelog_topic, key=key, value=value, partition=partition)
        except ValueError as error:  # kafka-python: "Unrecognized partition" once the topic left its metadata
            raise ChangelogError(f"cannot write to the changelog {self.config.changelog_topic}[{partition}]: "
                                 f"{error} (was the topic deleted?)") from error

    def _send(self, messages: list[tuple[str, bytes | None, dict]]) -> list:
        return [self.producer.send(topic, key=key, value=_json(value)) for topic, key, value in messages]


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
