"""Small real inputs for the unit tests: records, a rules config and a keyword scorer.

The keyword scorer stands in for the classifier only in unit tests of the pure engine;
integration tests use a real fine-tuned model.
"""

from __future__ import annotations

import json

from apps.finance_monitor.engine import Record, Score
from apps.finance_monitor.rules import rules_from_dict

NEGATIVE_WORDS = ("plunge", "fraud", "loss", "recall", "downgrade", "lawsuit")


def keyword_scorer(texts: list[str]) -> list[Score]:
    scores = []
    for text in texts:
        negative = any(word in text.lower() for word in NEGATIVE_WORDS)
        probs = {"negative": 0.9, "neutral": 0.08, "positive": 0.02} if negative else \
            {"negative": 0.05, "neutral": 0.9, "positive": 0.05}
        label = max(probs, key=probs.get)
        scores.append(Score(label, probs, probs["positive"] - probs["negative"]))
    return scores


def record(offset: int, ts: float, text: str, ticker: str | None = "NOVA", ident: str | None = None,
           partition: int = 0, value: bytes | None = None) -> Record:
    body = {"id": ident or f"m{offset}", "ts": ts, "source": "test", "text": text}
    if ticker:
        body["tickers"] = [ticker]
    raw = value if value is not None else json.dumps(body).encode()
    return Record("news", partition, offset, ticker.encode() if ticker else None, raw, int(ts * 1000))


def rules(**overrides):
    document = {
        "windows": {"short": "10m", "baseline": "1h"},
        "allowed_lateness": "1m",
        "cooldown": "30m",
        "evidence": 2,
        "rules": [
            {"name": "negative_share", "kind": "negative_share", "window": "short", "threshold": 0.6, "min_count": 5},
            {"name": "sentiment_drop", "kind": "zscore_drop", "window": "short", "baseline": "baseline", "z": 3.0,
             "min_count": 5, "min_baseline": 10},
            {"name": "volume_burst", "kind": "volume_burst", "window": "short", "baseline": "baseline",
             "factor": 4.0, "min_count": 12, "min_baseline": 6},
        ],
    }
    document.update(overrides)
    return rules_from_dict(document)


def write_batch(store, result, longest_window_s: float, webhook: bool = False, dedup_records: int = 0,
                log: list | None = None) -> list:
    """Stage and commit a batch as the stream does around its Kafka transaction (``log`` collects the changelog
    records, in order, as (partition, change)); returns the new alerts."""
    new, changes = store.stage_batch(result, longest_window_s, webhook, dedup_records)
    if log is not None:
        log.extend((partition, change) for partition, partition_changes in changes.items()
                   for change in partition_changes)
    store.commit("test-changelog", {partition: 0 for partition in changes})
    return new
