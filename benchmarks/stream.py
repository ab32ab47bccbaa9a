"""``make bench-stream``: the finance stream's throughput, latency and memory through a real broker.

Protocol (../shared/BENCHMARKS.md, "Speed and memory"), all with the registry's production
``finance-sentiment`` model and one batch size:

1. ``inference_msgs_per_s``: in-process batched inference (``SentimentScorer``) on a sample of the messages.
2. ``e2e_msgs_per_s``: 20,000 messages pre-loaded into a 4-partition topic; one processor
   (``python -m apps.finance_monitor run`` in a subprocess) from its first record until the
   group's committed offsets cover every message. ``ratio`` = e2e / inference (target >= 0.9).
3. ``p50_latency_s``/``p95_latency_s``: produce time to offset committed, at a fixed offered load of
   half the measured e2e capacity (committed offsets polled every 50 ms; target p95 < 1 s).
4. ``peak_rss_mb``: the processor's peak resident memory (VmHWM; target < 1.5 GB).
5. ``two_consumers_msgs_per_s``: two processors in one group on the same pre-loaded topic.
6. ``duplicates_in_committed_scores``: after run 2, the scores topic read as its consumers read it
   (``read_committed``): records beyond the first per message id (must be 0). ``exactly_once``: the
   stream commits each batch's outputs and offsets in one Kafka transaction (always, since issue 24).

Messages: the Twitter financial news texts (train + valid) with synthetic event times one
second apart, keyed by their first cashtag; the shipped demo news when the datasets are absent.
The broker: ``--bootstrap-servers``/``KAFKA_BOOTSTRAP_SERVERS`` when one answers there, else a
private broker started for the run in a temporary folder.

    python -m benchmarks.stream                       # -> var/bench/stream.json
    python -m benchmarks.stream --messages 4000 --latency-seconds 10 --skip-two-consumers   # quick look
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from benchmarks.figures import write_figures

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO_ROOT / "var" / "bench"
log = logging.getLogger("benchmarks.stream")
CASHTAG = re.compile(r"\$([A-Za-z]{1,6})\b")


# -- data --------------------------------------------------------------------------------------

def load_texts() -> tuple[list[str], str]:
    """Texts to stream, and where they came from."""
    from benchmarks.datasets import TWITTER_FILES, DatasetMissingError, datasets_dir

    try:
        texts = []
        for name in TWITTER_FILES.values():  # train, then test
            with open(datasets_dir() / name, newline="", encoding="utf-8") as handle:
                texts += [row["text"] for row in csv.DictReader(handle) if row["text"].strip()]
        return texts, "twitter_financial_news_sentiment (train + valid texts)"
    except (DatasetMissingError, FileNotFoundError):
        demo = REPO_ROOT / "apps" / "finance_monitor" / "demo" / "news.jsonl"
        return [json.loads(line)["text"] for line in demo.read_text().splitlines() if line.strip()], str(demo)


def make_records(texts: list[str], count: int, start_ts: float = 1_767_600_000.0) -> list[tuple[bytes | None, bytes]]:
    records = []
    for i in range(count):
        text = texts[i % len(texts)]
        tickers = list(dict.fromkeys(t.upper() for t in CASHTAG.findall(text)))
        value = {"id": f"bench-{i}", "ts": start_ts + i, "source": "bench", "text": text, "tickers": tickers}
        records.append((tickers[0].encode() if tickers else None, json.dumps(value).encode()))
    return records


# -- broker and processes ----------------------------------------------------------------------

@contextmanager
def broker_at(servers: str | None):
    """Yield bootstrap servers: the given/enviroment ones if a broker answers, else a private temporary broker."""
    from infra.kafka import broker

    servers = servers or os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    if broker.answers_metadata(servers, timeout_s=3.0):
        yield servers
        return
    state = Path(tempfile.mkdtemp(prefix="bench-kafka-"))
    port = int(os.environ.get("BENCH_KAFKA_PORT", "19692"))
    config = broker.BrokerConfig(port=port, controller_port=port + 1, state_dir=state / "node",
                                 log_file=REPO_ROOT / "var" / "log" / "kafka-bench.log", pid_file=state / "kafka.pid")
    log.info("no broker at %s: starting a private one on %s", servers, config.bootstrap_servers)
    broker.fetch_jars(config)
    broker.start(config)
    try:
        yield config.bootstrap_servers
    finally:
        broker.stop(config)


def create_topic(servers: str, topic: str, partitions: int) -> None:
    from apps.finance_monitor.stream import ensure_topics

    ensure_topics(servers, [topic], partitions)


def preload(servers: str, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=servers, enable_idempotence=True, acks="all", linger_ms=20,
                             batch_size=262144, retries=10, retry_backoff_ms=200)
    failed: list[Exception] = []
    for key, value in records:
        producer.send(topic, key=key, value=value).add_errback(failed.append)
    producer.flush()
    producer.close()
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(records)} records were not acknowledged: {failed[0]!r}")


class Processor:
    """``python -m apps.finance_monitor run`` in a subprocess, with its metrics endpoint."""

    def __init__(self, args, servers: str, run: str, group: str, topic: str, db: Path, port: int,
                 threads: int | None = None) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        if threads:
            env["TEXTML_NUM_THREADS"] = str(threads)
        command = [sys.executable, "-m", "apps.finance_monitor", "run", "--bootstrap-servers", servers,
                   "--group", group, "--input-topic", topic, "--scored-topic", f"bench.{run}.scored",
                   "--alerts-topic", f"bench.{run}.alerts", "--deadletter-topic", f"bench.{run}.dead",
                   "--db", str(db), "--batch-size", str(args.batch_size), "--max-wait-ms", str(args.max_wait_ms),
                   "--linger-ms", str(args.linger_ms),
                   "--metrics-port", str(port), "--model", args.model, "--partitions", "4"]
        if args.registry:
            command += ["--registry", args.registry]
        if args.device:
            command += ["--device", args.device]
        self.port = port
        self.log_path = db.with_suffix(f".{port}.log")
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=open(self.log_path, "wb"),
                                        stderr=subprocess.STDOUT)

    def metric(self, name: str) -> float | None:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2).read().decode()
        except OSError:
            return None
        match = re.search(rf"^{re.escape(name)} ([0-9.eE+-]+)$", text, re.MULTILINE)
        return float(match.group(1)) if match else None

    def wait_ready(self, timeout_s: float = 300.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the processor exited with {self.process.returncode}; see {self.log_path}")
            if self.metric("finance_ready") == 1.0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"the processor was not ready in {timeout_s:.0f} s; see {self.log_path}")

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024.0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def committed(admin, group: str) -> dict[int, int]:
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    except Exception:  # the coordinator may still be loading the group
        return {}
    return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


def wait_all_committed(servers: str, group: str, total: int, processes: list[Processor],
                       timeout_s: float) -> float:
    """Poll until the group's committed offsets add up to ``total``; returns the time.time() it happened."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=servers)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if sum(committed(admin, group).values()) >= total:
                return time.time()
            for p in processes:
                if p.process.poll() is not None:
                    raise RuntimeError(f"a processor exited with {p.process.returncode}; see {p.log_path}")
            time.sleep(0.1)
    finally:
        admin.close()
    raise RuntimeError(f"the group {group} did not commit {total} messages in {timeout_s:.0f} s")


# -- the measurements --------------------------------------------------------------------------

def inference_rate(args, texts: list[str]) -> tuple[float, str]:
    from apps.finance_monitor.scoring import load_scorer
    from core.registry import Registry

    scorer = load_scorer(Registry(Path(args.registry) if args.registry else None), args.model,
                         device=args.device, batch_size=args.batch_size)
    sample = texts[: args.inference_sample]
    scorer(sample[: args.batch_size])  # warm-up
    started = time.perf_counter()
    for i in range(0, len(sample), args.batch_size):  # the batches the stream would see
        scorer(sample[i:i + args.batch_size])
    return len(sample) / (time.perf_counter() - started), scorer.version


def throughput(args, servers: str, records, workdir: Path, consumers: int) -> dict:
    run = uuid.uuid4().hex[:6]
    topic, group = f"bench.{run}.news", f"bench-{run}"
    create_topic(servers, topic, 4)
    preload(servers, topic, records)
    threads = max((os.cpu_count() or 2) // consumers, 1) if consumers > 1 else None
    processes = [Processor(args, servers, run, group, topic, workdir / f"{run}-{i}.db", args.metrics_port + i, threads)
                 for i in range(consumers)]
    try:
        for p in processes:
            p.wait_ready()
        done = wait_all_committed(servers, group, len(records), processes, args.timeout)
        first = min(v for p in processes if (v := p.metric("finance_first_record_timestamp_seconds")))
        rss = max(p.peak_rss_mb() for p in processes)
    finally:
        for p in processes:
            p.stop()
    return {"msgs_per_s": len(records) / (done - first), "seconds": done - first, "peak_rss_mb": rss,
            "duplicates": committed_duplicates(servers, f"bench.{run}.scored")}


def committed_duplicates(servers: str, topic: str, timeout_s: float = 120.0) -> int:
    """Records of ``topic`` beyond the first per message id, read with isolation_level="read_committed"."""
    from collections import Counter

    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False, isolation_level="read_committed")
    ids: Counter = Counter()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(consumer.position(tp) < ends[tp] for tp in partitions):
            for batch in consumer.poll(timeout_ms=500, max_records=5000).values():
                ids.update(json.loads(r.value)["id"] for r in batch)
    finally:
        consumer.close()
    return sum(count - 1 for count in ids.values())


def latency(args, servers: str, records, rate: float, workdir: Path) -> dict:
    """Offer ``rate`` msgs/s for ``args.latency_seconds``; latency = produce time -> offset committed."""
    from kafka import KafkaAdminClient, KafkaProducer

    run = uuid.uuid4().hex[:6]
    topic, group = f"bench.{run}.news", f"bench-{run}"
    create_topic(servers, topic, 4)
    processor = Processor(args, servers, run, group, topic, workdir / f"{run}.db", args.metrics_port)
    sent: dict[tuple[int, int], float] = {}
    latencies: list[float] = []
    lock = threading.Lock()
    try:
        processor.wait_ready()
        producer = KafkaProducer(bootstrap_servers=servers, enable_idempotence=True, acks="all", linger_ms=0,
                                 retries=10, retry_backoff_ms=200)
        warmup = records[:50]
        for key, value in warmup:
            producer.send(topic, key=key, value=value)
        producer.flush()
        wait_all_committed(servers, group, len(warmup), [processor], 120)
        count = int(rate * args.latency_seconds)
        stop = threading.Event()

        def watch() -> None:
            admin = KafkaAdminClient(bootstrap_servers=servers)
            while not stop.is_set():
                offsets = committed(admin, group)
                now = time.time()
                with lock:
                    for key in [k for k in sent if k[1] < offsets.get(k[0], -1)]:
                        latencies.append(now - sent.pop(key))
                time.sleep(0.05)
            admin.close()

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        started = time.monotonic()
        for i, (key, value) in enumerate(records[len(warmup):len(warmup) + count]):
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            t_sent = time.time()
            future = producer.send(topic, key=key, value=value)
            # register as soon as the broker answers, so the watcher can match the offset
            future.add_callback(lambda meta, t=t_sent: _register(lock, sent, meta, t))
        producer.flush()
        offered_s = time.monotonic() - started
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with lock:
                if len(latencies) >= count:
                    break
            time.sleep(0.1)
        stop.set()
        watcher.join(5)
        producer.close()
    finally:
        processor.stop()
    values = np.array(latencies)
    return {"p50_latency_s": float(np.percentile(values, 50)), "p95_latency_s": float(np.percentile(values, 95)),
            "latency_messages": int(len(values)), "offered_msgs_per_s": round(count / offered_s, 1)}


def _register(lock, sent, meta, t_sent) -> None:
    with lock:
        sent[(meta.partition, meta.offset)] = t_sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stream", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000, help="messages pre-loaded (default 20000)")
    parser.add_argument("--batch-size", type=int, default=64, help="inference and stream batch size (default 64)")
    parser.add_argument("--max-wait-ms", type=int, default=250, help="stream batch wait (default 250)")
    parser.add_argument("--linger-ms", type=int, default=5, help="stream batch cut after an input pause (default 5)")
    parser.add_argument("--inference-sample", type=int, default=3000, help="messages for the in-process rate")
    parser.add_argument("--latency-seconds", type=float, default=30.0, help="length of the half-load run (30)")
    parser.add_argument("--skip-two-consumers", action="store_true", help="skip the two-processor run")
    parser.add_argument("--model", default="finance-sentiment", help="registry model (its production alias)")
    parser.add_argument("--registry", help="registry root (default TEXTML_MODEL_DIR or var/models)")
    parser.add_argument("--device", help="cpu or cuda (default: CUDA when available)")
    parser.add_argument("--bootstrap-servers", help="broker (default KAFKA_BOOTSTRAP_SERVERS, else a private one)")
    parser.add_argument("--metrics-port", type=int, default=19464, help="first metrics port of the processors")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up a run after this many seconds")
    parser.add_argument("--output", default=str(BENCH_DIR / "stream.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from benchmarks.quality import machine

    texts, source = load_texts()
    records = make_records(texts, args.messages)
    inference, version = inference_rate(args, [json.loads(v)["text"] for _, v in records])
    log.info("in-process inference: %.1f msgs/s (%s)", inference, version)
    figures: dict = {"model": version, "batch_size": args.batch_size, "max_wait_ms": args.max_wait_ms,
                     "linger_ms": args.linger_ms, "messages": args.messages, "data": source,
                     "inference_msgs_per_s": round(inference, 1)}
    with broker_at(args.bootstrap_servers) as servers, tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        workdir = Path(tmp)
        one = throughput(args, servers, records, workdir, consumers=1)
        figures.update(e2e_msgs_per_s=round(one["msgs_per_s"], 1), ratio=round(one["msgs_per_s"] / inference, 3),
                       e2e_seconds=round(one["seconds"], 1), peak_rss_mb=round(one["peak_rss_mb"], 1),
                       exactly_once=True, duplicates_in_committed_scores=one["duplicates"])
        log.info("end to end (exactly-once): %.1f msgs/s (ratio %.3f), peak RSS %.0f MB, %d duplicate(s) in the "
                 "committed scores", one["msgs_per_s"], figures["ratio"], one["peak_rss_mb"], one["duplicates"])
        half = latency(args, servers, records, one["msgs_per_s"] / 2, workdir)
        figures.update({k: round(v, 4) if isinstance(v, float) else v for k, v in half.items()})
        log.info("latency at half load: p50 %.3f s, p95 %.3f s", half["p50_latency_s"], half["p95_latency_s"])
        if not args.skip_two_consumers:
            two = throughput(args, servers, records, workdir, consumers=2)
            figures["two_consumers_msgs_per_s"] = round(two["msgs_per_s"], 1)
            log.info("two processors: %.1f msgs/s", two["msgs_per_s"])
    figures["targets"] = {"ratio": ">= 0.9", "p95_latency_s": "< 1.0", "peak_rss_mb": "< 1536",
                          "duplicates_in_committed_scores": "== 0"}
    figures["machine"] = machine()
    write_figures(args.output, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
