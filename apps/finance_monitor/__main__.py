"""python -m apps.finance_monitor: the financial sentiment alert stream and its tools.

Commands:
  run               the stream: score finance.news, aggregate per ticker, raise alerts (SIGTERM stops it cleanly)
  replay FILE       produce a JSONL/CSV file into the input topic at --rate messages/s
  alerts            print the committed alert history of this processor's partitions (its state store);
                    --follow tails the alerts topic of the whole group (read_committed)
  train-demo-model  fine-tune the small demo sentiment model and register it (production if none exists)
  demo              ensure a model and a broker, replay the shipped demo news, show the alerts raised

Environment (read once, in settings.py): KAFKA_BOOTSTRAP_SERVERS, TEXTML_MODEL_DIR, TEXTML_VAR_DIR,
FINANCE_GROUP, FINANCE_INPUT_TOPIC, FINANCE_SCORED_TOPIC, FINANCE_ALERTS_TOPIC, FINANCE_DEADLETTER_TOPIC,
FINANCE_MODEL, FINANCE_MODEL_VERSION, FINANCE_RULES, FINANCE_TICKERS, FINANCE_DB, FINANCE_WEBHOOK_URL,
FINANCE_BATCH_SIZE, FINANCE_MAX_WAIT_MS, FINANCE_LINGER_MS, FINANCE_METRICS_PORT, FINANCE_DEVICE,
FINANCE_INSTANCE_ID, FINANCE_DEDUP_RECORDS. Options override them.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path

from apps.finance_monitor.settings import DEMO_DIR, StreamConfig, config_from_env

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models come from the registry and the packaged base models
log = logging.getLogger("apps.finance_monitor")


def _add_stream_options(parser: argparse.ArgumentParser) -> None:
    d = StreamConfig()
    group = parser.add_argument_group("stream settings (default: environment, else the value shown)")
    group.add_argument("--bootstrap-servers",
                       help=f"Kafka bootstrap servers (KAFKA_BOOTSTRAP_SERVERS; {d.bootstrap_servers})")
    group.add_argument("--group", dest="group_id", help=f"consumer group ({d.group_id})")
    group.add_argument("--input-topic", help=f"news topic ({d.input_topic})")
    group.add_argument("--scored-topic", help=f"scores topic ({d.scored_topic})")
    group.add_argument("--alerts-topic", help=f"alerts topic ({d.alerts_topic})")
    group.add_argument("--deadletter-topic", help=f"dead-letter topic ({d.deadletter_topic})")
    group.add_argument("--model", dest="model_name", help=f"registry model name ({d.model_name})")
    group.add_argument("--model-version", help=f"registry alias or version ({d.model_version})")
    group.add_argument("--registry", dest="registry_root", type=Path,
                       help="registry root (TEXTML_MODEL_DIR; var/models)")
    group.add_argument("--rules", dest="rules_path", type=Path, help="rules YAML (demo/rules.yaml)")
    group.add_argument("--tickers", dest="tickers_path", type=Path, help="ticker dictionary YAML (demo/tickers.yaml)")
    group.add_argument("--db", dest="db_path", type=Path, help="this processor's own state store and alert history, "
                       "SQLite (FINANCE_DB; $TEXTML_VAR_DIR/finance_monitor/alerts.db)")
    group.add_argument("--batch-size", type=int, help=f"records per batch at most ({d.batch_size})")
    group.add_argument("--max-wait-ms", type=int, help=f"longest wait to fill a batch ({d.max_wait_ms})")
    group.add_argument("--linger-ms", type=int, help="once records arrived, score them when no more came for "
                       f"this long instead of waiting for a full batch ({d.linger_ms})")
    group.add_argument("--metrics-port", type=int, help=f"Prometheus port on 127.0.0.1, 0 for none ({d.metrics_port})")
    group.add_argument("--webhook-url", help="Slack-compatible webhook for alerts (none)")
    group.add_argument("--device", help="cpu or cuda (CUDA when available)")
    group.add_argument("--partitions", type=int, help=f"partitions of topics the stream creates ({d.partitions})")
    group.add_argument("--instance-id", help="this processor's stable id, part of its Kafka transactional id "
                       "(FINANCE_INSTANCE_ID; default <host>-<8 hex digits of the store's path>)")
    group.add_argument("--dedup-records", type=int, help="a message id (per record key) repeated within this many "
                       f"offsets of a partition is scored and counted once; 0 turns it off ({d.dedup_records})")


def _config(args: argparse.Namespace) -> StreamConfig:
    config = config_from_env()
    overrides = {name: getattr(args, name) for name in StreamConfig.__dataclass_fields__
                 if getattr(args, name, None) is not None}
    config = replace(config, **overrides)
    config.validate()
    return config


def run_command(args: argparse.Namespace) -> int:
    from apps.finance_monitor.rules import load_rules
    from apps.finance_monitor.tickers import load_tickers

    config = _config(args)
    load_rules(config.rules_path)  # bad configuration fails in a second, before the model libraries load
    load_tickers(config.tickers_path)
    if args.ensure_model:
        from apps.finance_monitor.demo_model import ensure_model

        ensure_model(config)
    from apps.finance_monitor.service import build_stream

    processor = build_stream(config)
    processor.metrics.serve(config.metrics_port)

    def stop(signum, _frame):
        log.info("signal %d: finishing the batch, committing, closing", signum)
        processor.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        processor.run(idle_exit_s=args.exit_when_idle)
    finally:
        processor.metrics.close()
    return 0


def replay_command(args: argparse.Namespace) -> int:
    from apps.finance_monitor.replay import ReplayOptions, make_producer, messages_from_file, replay
    from apps.finance_monitor.stream import ensure_topics
    from apps.finance_monitor.tickers import load_tickers

    config = _config(args)
    options = ReplayOptions(rate=args.rate, start_ts=args.start_ts, spacing_s=args.spacing,
                            text_column=args.text_column, limit=args.limit)
    messages = messages_from_file(args.file, options, load_tickers(config.tickers_path))
    ensure_topics(config.bootstrap_servers, [config.input_topic], config.partitions, wait_s=10.0)
    producer = make_producer(config.bootstrap_servers)
    try:
        sent = replay(producer, config.input_topic, messages, args.rate)
    finally:
        producer.close()
    print(f"sent {sent} records from {args.file} to {config.input_topic}")
    return 0


def alerts_command(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.follow:
        from apps.finance_monitor.follow import follow_topic

        try:
            follow_topic(config.bootstrap_servers, config.alerts_topic, as_json=args.json, last=args.last)
        except KeyboardInterrupt:
            pass
        return 0
    from apps.finance_monitor.follow import show_alerts
    from apps.finance_monitor.store import StateStore

    store = StateStore(config.db_path, config.group_id)
    try:
        shown = show_alerts(store, as_json=args.json, last=args.last)
    finally:
        store.close()
    if not shown and not args.json:
        print(f"no committed alerts in {config.db_path}")
    return 0


def train_demo_command(args: argparse.Namespace) -> int:
    from apps.finance_monitor.demo_model import train_demo_model
    from core.registry import Registry

    config = _config(args)
    result = train_demo_model(Registry(config.registry_root), config.model_name, args.data, epochs=args.epochs,
                              device=config.device)
    print(f"saved {result.path} (dev {result.dev_metrics})\n{result.reason}")
    return 0


def demo_command(args: argparse.Namespace) -> int:
    from apps.finance_monitor.demo import run_demo

    return run_demo(_config(args), args.file)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m apps.finance_monitor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the stream until SIGTERM")
    run.add_argument("--exit-when-idle", type=float, metavar="SECONDS",
                     help="stop after this long without input (for batch jobs and demos); default: run forever")
    run.add_argument("--ensure-model", action="store_true",
                     help="train and register the demo model first when no production model exists")
    _add_stream_options(run)
    run.set_defaults(handler=run_command)

    rep = commands.add_parser("replay", help="produce a JSONL/CSV file into the input topic")
    rep.add_argument("file", type=Path, help="JSONL or CSV with a text column; id, ts, source, tickers optional")
    rep.add_argument("--rate", type=float, default=0.0, help="messages per second (default 0: as fast as possible)")
    rep.add_argument("--text-column", default="text", help="column holding the text (default text)")
    rep.add_argument("--start-ts", type=float, help="first synthetic event time, epoch s (default now)")
    rep.add_argument("--spacing", type=float, default=10.0,
                     help="event-time seconds between rows without a ts (default 10)")
    rep.add_argument("--limit", type=int, help="only the first N rows")
    _add_stream_options(rep)
    rep.set_defaults(handler=replay_command)

    alerts = commands.add_parser("alerts", help="show the committed alert history (SQLite); --follow reads the "
                                 "alerts topic (read_committed) and prints new alerts as they come")
    alerts.add_argument("--follow", "-f", action="store_true",
                        help="print the alerts topic's committed alerts and keep printing new ones (Ctrl-C stops)")
    alerts.add_argument("--json", action="store_true", help="one JSON object per line")
    alerts.add_argument("--last", type=int, help="start with only the last N alerts (with --follow: per partition)")
    _add_stream_options(alerts)
    alerts.set_defaults(handler=alerts_command)

    train = commands.add_parser("train-demo-model", help="fine-tune the demo sentiment model and register it")
    train.add_argument("--data", type=Path, default=DEMO_DIR / "sentiment_train.jsonl",
                       help="labelled JSONL/CSV (text, label: negative/neutral/positive)")
    train.add_argument("--epochs", type=int, default=2, help="epochs (default 2)")
    _add_stream_options(train)
    train.set_defaults(handler=train_demo_command)

    demo = commands.add_parser("demo", help="replay the shipped demo news through the stream and show the alerts")
    demo.add_argument("--file", type=Path, default=DEMO_DIR / "news.jsonl", help="news to replay (demo/news.jsonl)")
    _add_stream_options(demo)
    demo.set_defaults(handler=demo_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("kafka", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from apps.finance_monitor.instance import StoreInUseError
    from apps.finance_monitor.rules import RulesError
    from apps.finance_monitor.stream import BrokerUnavailableError
    from apps.finance_monitor.tickers import TickerConfigError
    from core.data.tables import DataError
    from core.registry import ModelNotFoundError

    try:
        return args.handler(args)
    except (RulesError, TickerConfigError, DataError, ModelNotFoundError, ValueError,
            BrokerUnavailableError, StoreInUseError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
