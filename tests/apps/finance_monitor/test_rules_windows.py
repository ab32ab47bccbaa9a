"""Rules validation, sliding windows with out-of-order tolerance, and the alert engine (no Kafka)."""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.finance_monitor.engine import AlertEngine
from apps.finance_monitor.messages import MessageLimits
from apps.finance_monitor.rules import RulesError, load_rules, parse_duration, rules_from_dict
from apps.finance_monitor.tickers import TickerExtractor
from apps.finance_monitor.windows import Event, TickerWindows

from .helpers import keyword_scorer, record, rules

T0 = 1_767_600_000.0
DEFAULT_RULES = Path(__file__).resolve().parents[3] / "apps" / "finance_monitor" / "demo" / "rules.yaml"


def engine(**overrides) -> AlertEngine:
    return AlertEngine(rules(**overrides), TickerExtractor({"NOVA": ("Novagen",)}), MessageLimits(), "test:v1")


def test_default_rules_file_is_valid():
    config = load_rules(DEFAULT_RULES)
    assert config.windows == {"short": 900.0, "baseline": 3600.0}
    assert [r.kind for r in config.rules] == ["negative_share", "zscore_drop", "volume_burst"]


def test_durations():
    assert [parse_duration(v) for v in ("90", "90s", "15m", "1h", "1.5d", 30, "-1m", "soon")] == \
        [90.0, 90.0, 900.0, 3600.0, 129600.0, 30.0, None, None]


def test_invalid_rules_list_every_problem():
    with pytest.raises(RulesError) as error:
        rules_from_dict({"windows": {"short": "15m", "long": "5m"}, "cooldown": "often", "rules": [
            {"name": "a", "kind": "negative_share", "window": "short", "threshold": 1.5},
            {"name": "b", "kind": "zscore_drop", "window": "short", "baseline": "long", "z": 3},
            {"name": "c", "kind": "spike", "window": "short"},
            {"name": "d", "kind": "volume_burst", "window": "hour", "baseline": "short", "factor": 2, "colour": 1},
        ]})
    text = str(error.value)
    for expected in ("cooldown is 'often'", "rules[0].threshold is 1.5; expected a share between 0 and 1",
                     "rules[1].baseline 'long' (300s) must be longer than window 'short' (900s)",
                     "rules[2].kind is 'spike'; expected one of", "rules[3].window is 'hour'",
                     "rules[3] has unknown key(s) ['colour']"):
        assert expected in text


def test_missing_rules_file_says_what_to_pass(tmp_path):
    with pytest.raises(RulesError, match="does not exist; pass --rules"):
        load_rules(tmp_path / "nope.yaml")


def test_out_of_order_events_are_released_in_time_order_and_late_ones_dropped():
    windows = TickerWindows({"w": 600.0}, allowed_lateness_s=60.0)
    released = []
    for seq, ts in enumerate([100, 130, 110, 200, 170, 400, 105]):
        accepted = windows.offer(Event(T0 + ts, seq, f"e{seq}", 0.0, False, ""))
        released += [int(e.ts - T0) for e in windows.release()]
        if ts == 105:
            assert not accepted  # 110 was already released when 105 arrived
    assert released == [100, 110, 130, 170, 200]
    assert windows.buffered == 1 and windows.stats("w").count == 5


def test_window_slides_and_evicts():
    windows = TickerWindows({"w": 100.0}, allowed_lateness_s=0.0)
    for seq, (ts, score) in enumerate([(0, -1.0), (50, 1.0), (120, 0.5)]):
        windows.offer(Event(T0 + ts, seq, str(seq), score, score < 0, ""))
        list(windows.release())
    stats = windows.stats("w")
    assert (stats.count, stats.mean, stats.negatives) == (2, 0.75, 0)


def neutral_then_negative(start: int = 0) -> list:
    """40 neutral messages over 40 minutes, then 8 negative ones within 4 minutes, then 2 neutral."""
    records = [record(start + i, T0 + 60 * i, f"Novagen schedules its annual meeting #{i}") for i in range(40)]
    base = T0 + 60 * 40
    records += [record(start + 40 + i, base + 30 * i, f"Novagen shares plunge on fraud probe #{i}") for i in range(8)]
    records += [record(start + 48 + i, base + 300 + 60 * i, f"Novagen opens a new office #{i}") for i in range(2)]
    return records


def test_negative_burst_raises_share_and_drop_alerts_once_each_with_evidence():
    alerts = engine().process(neutral_then_negative(), keyword_scorer).alerts
    assert sorted(a.rule for a in alerts) == ["negative_share", "sentiment_drop"]
    share = next(a for a in alerts if a.rule == "negative_share")
    assert share.ticker == "NOVA" and share.window == "short" and share.model_version == "test:v1"
    assert share.figures["count"] >= 5 and share.figures["negative_share"] > 0.6
    assert len(share.evidence) == 2 and all("plunge" in e["text"] for e in share.evidence)
    assert {"alert_id", "ticker", "rule", "window", "figures", "evidence", "model_version", "ts"} <= \
        set(share.to_dict())


def test_neutral_traffic_raises_nothing():
    records = [record(i, T0 + 30 * i, f"Novagen publishes a routine filing #{i}") for i in range(200)]
    assert engine().process(records, keyword_scorer).alerts == []


def test_alerts_do_not_depend_on_batch_boundaries():
    records = neutral_then_negative()
    whole = engine().process(records, keyword_scorer).alerts
    split = engine()
    pieces = [a for i in range(0, len(records), 7) for a in split.process(records[i:i + 7], keyword_scorer).alerts]
    assert [a.alert_id for a in whole] == [a.alert_id for a in pieces]


def test_cooldown_stops_a_flood():
    records = [record(i, T0 + 20 * i, f"Novagen recall widens #{i}") for i in range(60)]  # 20 minutes of bad news
    alerts = engine().process(records, keyword_scorer).alerts
    assert [a.rule for a in alerts] == ["negative_share"]


def test_volume_burst():
    records = [record(i, T0 + 300 * i, f"Novagen note #{i}") for i in range(10)]  # 50 minutes, one per 5 min
    records += [record(10 + i, T0 + 3000 + 10 * i, f"Novagen mention #{i}") for i in range(20)]
    records.append(record(30, T0 + 3300, "Novagen later note"))
    alerts = engine().process(records, keyword_scorer).alerts
    assert [a.rule for a in alerts] == ["volume_burst"]
    assert alerts[0].figures["ratio"] >= 4.0


def test_dead_letters_and_offsets():
    records = [record(0, T0, "ok Novagen"), record(1, T0, "", value=b"{broken"), record(2, T0, "x", value=b'{"id": 1}')]
    result = engine().process(records, keyword_scorer)
    assert [d["reason"] for _, d in result.dead] == ["not_json", "missing_text"]
    assert result.dead[0][1]["input"]["offset"] == 1
    assert len(result.scored) == 1 and result.scored[0][1]["tickers"] == ["NOVA"]
    assert result.offsets == {("news", 0): 3}


def test_tickers_are_extracted_when_the_message_has_none():
    result = engine().process([record(0, T0, "Novagen and $ORBT rally", ticker=None)], keyword_scorer)
    assert result.scored[0][1]["tickers"] == ["NOVA", "ORBT"]
    assert sorted(t for (_, t) in result.touched) == ["NOVA", "ORBT"]
