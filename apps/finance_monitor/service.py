"""Assemble a ready-to-run stream from its configuration: rules, tickers, model, engine, processor."""

from __future__ import annotations

from apps.finance_monitor.engine import AlertEngine
from apps.finance_monitor.messages import MessageLimits
from apps.finance_monitor.rules import load_rules
from apps.finance_monitor.scoring import SentimentScorer, load_scorer
from apps.finance_monitor.settings import StreamConfig
from apps.finance_monitor.stream import StreamProcessor
from apps.finance_monitor.tickers import load_tickers
from core.registry import Registry


def build_stream(config: StreamConfig, registry: Registry | None = None,
                 scorer: SentimentScorer | None = None) -> StreamProcessor:
    """Rules, tickers and the model are loaded and validated here, before Kafka is touched.

    ``scorer`` lets a caller that already holds the loaded model (tests, benchmarks) reuse it.
    """
    rules = load_rules(config.rules_path)
    extractor = load_tickers(config.tickers_path)
    if scorer is None:
        registry = registry or Registry(config.registry_root)
        scorer = load_scorer(registry, config.model_name, config.model_version, config.device, config.batch_size)
    engine = AlertEngine(rules, extractor, MessageLimits(config.max_message_bytes, config.max_text_chars),
                         scorer.version, config.dedup_records)
    return StreamProcessor(config, engine, scorer)
