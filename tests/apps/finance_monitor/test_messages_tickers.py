"""Message validation (dead-letter reasons) and ticker extraction."""

from __future__ import annotations

import json

import pytest

from apps.finance_monitor.messages import DeadLetter, MessageLimits, NewsMessage, parse_message, parse_timestamp
from apps.finance_monitor.tickers import TickerConfigError, TickerExtractor, load_tickers


def test_valid_message_with_iso_time_and_tickers():
    raw = json.dumps({"id": 7, "ts": "2026-01-05T10:00:00Z", "text": " Novagen beats ", "tickers": ["$nova"]})
    message = parse_message(raw.encode(), fallback_ts=1.0)
    assert message == NewsMessage("7", 1767607200.0, "unknown", "Novagen beats", ("NOVA",))


def test_missing_ts_uses_kafka_time_and_milliseconds_are_recognised():
    assert parse_message(b'{"id": "a", "text": "x"}', fallback_ts=42.0).ts == 42.0
    assert parse_timestamp(1767607200000) == 1767607200.0
    assert parse_timestamp("yesterday") is None


@pytest.mark.parametrize("raw, reason", [
    (b"not json", "not_json"),
    (b"\xff\xfe", "not_json"),
    (None, "not_json"),
    (b"[1, 2]", "not_object"),
    (b'{"id": "a"}', "missing_text"),
    (b'{"id": "a", "text": "   "}', "missing_text"),
    (b'{"text": "hello"}', "bad_field"),
    (b'{"id": "a", "text": "x", "ts": "soon"}', "bad_field"),
    (b'{"id": "a", "text": "x", "tickers": "NOVA"}', "bad_field"),
    (json.dumps({"id": "a", "text": "x" * 300}).encode(), "oversize"),
    (b"x" * 2000, "oversize"),
])
def test_bad_messages_become_dead_letters_with_reason(raw, reason):
    result = parse_message(raw, 0.0, MessageLimits(max_bytes=1000, max_text_chars=200))
    assert isinstance(result, DeadLetter)
    assert result.reason == reason
    assert result.detail


def test_cashtags_and_dictionary_names_in_order_of_appearance():
    extractor = TickerExtractor({"NOVA": ("Novagen", "Novagen Corp"), "ORBT": ("Orbital Freight",)})
    text = "orbital freight slips while Novagen's margin grows; $qntm and $NOVA too; Novagenix unrelated"
    assert extractor.extract(text) == ("ORBT", "NOVA", "QNTM")
    assert TickerExtractor({"NOVA": ()}, cashtags="known").extract("$QNTM and $NOVA") == ("NOVA",)
    assert extractor.extract("US$5 price, no tickers here") == ()


def test_ticker_dictionary_errors_name_the_entry(tmp_path):
    path = tmp_path / "tickers.yaml"
    path.write_text("nova: [Novagen]\n")
    with pytest.raises(TickerConfigError, match="symbol 'nova' is not a ticker"):
        load_tickers(path)
    path.write_text("NOVA: 3\n")
    with pytest.raises(TickerConfigError, match="names of NOVA are 3"):
        load_tickers(path)
    with pytest.raises(TickerConfigError, match="does not exist"):
        load_tickers(tmp_path / "missing.yaml")
    path.write_text("NOVA: [Novagen]\nORBT: Orbital Freight\n")
    assert load_tickers(path).known == {"NOVA": ("Novagen",), "ORBT": ("Orbital Freight",)}
