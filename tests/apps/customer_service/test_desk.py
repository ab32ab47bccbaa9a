"""The support desk's pure parts: periods and buckets, latency quantiles, SVG charts, staff sessions, question groups.

Known answers on constructed data; the question groups use the real MiniLM embedder (conftest).
The served page is tested in a real browser by ``test_desk_e2e.py``.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, Histogram

from apps.customer_service.desk_auth import DeskSessions, same_origin, session_cookie
from apps.customer_service.desk_charts import COLOURS, LINES, latency_chart, shares_chart
from apps.customer_service.desk_data import DeskError, build_desk, parse_period, share_series
from apps.customer_service.desk_latency import Buckets, LatencyTrack, read_histogram
from apps.customer_service.desk_unanswered import UnansweredGroups
from apps.customer_service.events import DECISIONS, Decision
from apps.customer_service.tickets import Ticket

NOW = datetime(2026, 12, 2, 10, 30, tzinfo=UTC)
TOKEN = "staff-token-0123456789abcdef"


def decision(kind: str, minutes_ago: float, text: str = "q") -> Decision:
    return Decision(kind, text, at=NOW - timedelta(minutes=minutes_ago))


# ---------------------------------------------------------------- periods and shares
def test_parse_period_names_the_choices() -> None:
    assert parse_period(None).name == "24h" and parse_period("1h").bucket == timedelta(minutes=5)
    with pytest.raises(DeskError, match=r"period '3d' is not one of 1h, 24h, 7d; expected e.g. \?period=24h"):
        parse_period("3d")


def test_share_series_counts_each_bucket_and_leaves_out_the_rest() -> None:
    period = parse_period("1h")  # 12 buckets of 5 minutes; the last holds 10:30
    series = share_series([decision("answer", 0), decision("answer", 1), decision("decline", 2),
                           decision("handoff", 7), decision("answer", 61), decision("answer", -10)], period, NOW)
    assert len(series) == 12 and series[-1]["start"] == "2026-12-02T10:30:00.000000Z"
    assert series[-1]["total"] == 1 and series[-1]["counts"]["answer"] == 1  # 10:30; 10:29 is in 10:25's
    assert series[-2]["counts"] == {"answer": 1, "clarify": 0, "decline": 1, "handoff": 0, "unavailable": 0}
    assert series[-3]["counts"]["handoff"] == 1
    assert sum(bucket["total"] for bucket in series) == 4  # 61 minutes ago and the future are outside


def test_build_desk_shares_tickets_and_charts() -> None:
    decisions = [decision("answer", 1), decision("answer", 2), decision("clarify", 3), decision("handoff", 4)]
    tickets = [Ticket(i, "2026-12-02T10:00:00Z", f"s{i}", "customer asked", "open",
                      [{"speaker": "user", "text": f"turn {j}"} for j in range(40)]) for i in (1, 2)]
    desk = build_desk(decisions, tickets, parse_period("24h"), NOW, [], {"all": None, "actions": []},
                      {"status": "grouping", "groups": [], "texts": 2})
    assert desk["counts"]["answer"] == 2 and desk["shares"] == {"answer": 0.5, "clarify": 0.25, "decline": 0.0,
                                                                 "handoff": 0.25, "unavailable": 0.0}
    assert [t["number"] for t in desk["tickets"]] == ["T-000002", "T-000001"]  # newest first
    assert desk["tickets"][0]["waiting_min"] == 30 and desk["tickets"][0]["turns"] == 40
    assert len(desk["tickets"][0]["transcript"]) == 30 and desk["tickets"][0]["transcript"][-1]["text"] == "turn 39"
    assert desk["charts"]["shares"].startswith("<svg") and len(desk["series"]) == 24


# ---------------------------------------------------------------- latency
def test_quantiles_interpolate_inside_the_bucket_like_prometheus() -> None:
    state = Buckets((0.1, 0.2, math.inf), (50, 100, 100), 12.0)  # 50 calls <= 0.1 s, 50 in (0.1, 0.2]
    assert state.quantile(0.5) == pytest.approx(0.1) and state.quantile(0.75) == pytest.approx(0.15)
    assert Buckets((0.1, math.inf), (0, 10), 50.0).quantile(0.95) == 0.1  # all above the last bound: that bound
    assert Buckets((0.1, math.inf), (0, 0), 0.0).quantile(0.5) is None
    with pytest.raises(ValueError, match="q=1.0 is out of range"):
        state.quantile(1.0)


def test_latency_track_reads_the_real_histogram_and_differences_samples() -> None:
    histogram = Histogram("t_seconds", "t", ["action"], buckets=(0.01, 0.1, 1.0), registry=CollectorRegistry())
    track = LatencyTrack(histogram)
    histogram.labels("action_a").observe(0.005)
    track.sample(NOW - timedelta(minutes=2))
    for _ in range(10):
        histogram.labels("action_b").observe(0.5)
    track.sample(NOW - timedelta(minutes=1))
    assert read_histogram(histogram)["action_b"].count == 10
    [point] = track.series(NOW - timedelta(hours=1))  # only the 10 calls between the samples
    assert point["calls"] == 10 and point["p50_ms"] == pytest.approx(550.0)
    histogram.labels("action_a").observe(0.02)  # after the last sample: a provisional point ending now
    assert track.series(NOW - timedelta(hours=1)) == [point]
    tail = track.series(NOW - timedelta(hours=1), NOW)[-1]
    assert tail["calls"] == 1 and tail["at"] == "2026-12-02T10:30:00.000000Z" and tail["p50_ms"] == pytest.approx(55.0)
    summary = track.summary()
    assert summary["all"]["calls"] == 12 and [row["action"] for row in summary["actions"]] == ["action_a", "action_b"]


# ---------------------------------------------------------------- charts
def test_charts_are_labelled_images_with_escaped_text() -> None:
    series = share_series([decision("answer", 1), decision("decline", 2)], parse_period("1h"), NOW)
    series[-1]["label"] = "<script>alert(1)</script>"
    svg = shares_chart(series, DECISIONS)
    assert 'role="img"' in svg and "<title id=\"shares-t\">Share of each decision over time</title>" in svg
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert "1 of 2 answered (50%)" in svg and "declined" in svg  # legend and hover text name the decision
    empty = latency_chart([])
    assert "no action calls sampled yet" in empty and "<polyline" not in empty
    drawn = latency_chart([{"label": "10:00", "calls": 3, "p50_ms": 20.0, "p95_ms": 80.0},
                           {"label": "10:01", "calls": 5, "p50_ms": 25.0, "p95_ms": None}])
    assert drawn.count("<polyline") == 1 and "p95 80.0 ms over 3 action calls" in drawn


def contrast(colour: str, background: str = "#ffffff") -> float:
    """WCAG contrast ratio of two sRGB colours."""
    def luminance(hex_colour: str) -> float:
        channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        r, g, b = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * r + 0.7152 * g + 0.0722 * b
    lighter, darker = sorted((luminance(colour), luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def test_chart_colours_have_enough_contrast_on_white() -> None:
    assert contrast("#000000") == pytest.approx(21.0)
    for colour in [*COLOURS.values(), *(colour for colour, _ in LINES.values())]:
        assert contrast(colour) >= 3.0, colour  # WCAG 1.4.11, graphics
        assert contrast(colour, "#f4f5f7") >= 3.0, colour  # the tiles' background


# ---------------------------------------------------------------- staff sessions
def request(method: str = "GET", cookie: str | None = None, csrf: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(method=method, cookies={"cs_desk_session": cookie} if cookie else {},
                           headers={"x-csrf-token": csrf} if csrf else {}, form={})


def test_sessions_need_the_staff_token_and_csrf_for_changes() -> None:
    sessions = DeskSessions(TOKEN)
    assert sessions.login("wrong-token-0123456789abcd") is None and sessions.login(None) is None
    session = sessions.login(TOKEN)
    assert session.id != TOKEN and session.csrf != session.id
    assert sessions.allows(request("GET", session.id))
    assert not sessions.allows(request("POST", session.id))  # a forged form post has no CSRF token
    assert not sessions.allows(request("POST", session.id, "not-the-csrf-token"))
    assert sessions.allows(request("POST", session.id, session.csrf))
    assert not sessions.allows(request("GET", "made-up-session-id"))
    sessions.logout(session.id)
    assert not sessions.allows(request("GET", session.id))
    with pytest.raises(ValueError, match="the staff token is empty"):
        DeskSessions("")


def test_sessions_expire() -> None:
    sessions = DeskSessions(TOKEN, lifetime=0.05)
    session = sessions.login(TOKEN)
    time.sleep(0.1)
    assert sessions.get(session.id) is None


def test_cookie_is_http_only_strict_and_origin_is_checked() -> None:
    session = DeskSessions(TOKEN).login(TOKEN)
    cookie = session_cookie(session, secure=False)
    assert f"cs_desk_session={session.id};" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" in session_cookie(session, secure=True) and "Max-Age=0" in session_cookie(None, secure=False)
    assert same_origin(None, "127.0.0.1:5055") and same_origin("http://127.0.0.1:5055", "127.0.0.1:5055")
    assert not same_origin("http://127.0.0.1:5005", "127.0.0.1:5055") and not same_origin("null", "x")
    assert same_origin("http://localhost:5055", "127.0.0.1:5055", ("http://localhost:5055",))


# ---------------------------------------------------------------- unanswered questions, cached
def test_groups_are_computed_in_the_background_and_cached(embedder) -> None:
    calls: list[int] = []

    def encode(texts):
        calls.append(len(texts))
        return embedder.encode(texts)

    texts = ["how do I change my PIN", "how can I change my card PIN", "I want a new PIN",
             "what is the weather in Lisbon", "how do I change my PIN"]

    async def scenario():
        groups = UnansweredGroups(encode, similarity=0.4, min_interval=0.0)
        first = groups.lookup("24h", texts)
        assert first["status"] == "grouping" and first["groups"] == []
        await asyncio.sleep(0)
        await next(iter(groups._running.values()))
        ready = groups.lookup("24h", texts)
        assert ready["status"] == "ready" and ready["texts"] == 5
        top = ready["groups"][0]
        assert top["size"] == 4 and "PIN" in top["question"]  # the three PIN phrasings, one asked twice
        assert ready["groups"][1] == {"size": 1, "question": "what is the weather in Lisbon", "examples": []}
        assert calls == [4]  # distinct texts embedded once
        groups.lookup("24h", texts + ["tell me a joke"])  # changed: recomputed, only the new text embedded
        await next(iter(groups._running.values()))
        assert calls == [4, 1] and groups.lookup("24h", texts + ["tell me a joke"])["texts"] == 6

    asyncio.run(scenario())
