"""The report on a small constructed event log (real SQLite, the real MiniLM embedder) with known groups."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from apps.customer_service.__main__ import build_parser, main
from apps.customer_service.events import Decision, EventLog, EventLogError
from apps.customer_service.report import ReportError, build_report, format_report, group_questions

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
MORTGAGES = ["Do you offer mortgages?"] * 3 + ["Can I get a home loan from you?", "What mortgage rates do you have?"]
WEATHER = ["What's the weather like tomorrow?", "Will it rain today?"]
JOINT = ["Can I open a joint account with my partner?", "Is a shared account for couples possible?"]
STOCKS = ["Can I invest in stocks with Nimbus?", "Do you support stock trading?"]


def constructed_log(path: Path) -> EventLog:
    """30 decisions over 20 days; the last 10 days hold 10 answers, 2 clarifications, 3 declines, 6 hand-offs."""
    log = EventLog(path)
    old = NOW - timedelta(days=15)
    for i in range(9):  # before the period
        log.record(Decision("answer", f"old question {i}", "card_arrival", at=old + timedelta(minutes=i)))
    recent = NOW - timedelta(days=2)
    rows = ([Decision("answer", "where is my card", "card_arrival", confidence=0.9)] * 10
            + [Decision("clarify", text, "nlu_fallback", confidence=0.4) for text in STOCKS]
            + [Decision("decline", text, "out_of_scope") for text in WEATHER + [JOINT[0]]]
            + [Decision("handoff", text, "nlu_fallback", "no_confident_answer", 0.1) for text in MORTGAGES]
            + [Decision("handoff", "talk to a person", "human_handoff", "customer_asked")])
    rows.insert(3, Decision("handoff", JOINT[1], "nlu_fallback", "unsure_after_clarifying", 0.45))
    for i, decision in enumerate(rows):
        log.record(Decision(decision.decision, decision.text, decision.intent, decision.reason, decision.confidence,
                            at=recent + timedelta(minutes=i)))
    return log


def test_report_shares_reasons_and_groups_by_meaning(tmp_path: Path, embedder) -> None:
    log = constructed_log(tmp_path / "events.sqlite3")
    since = NOW - timedelta(days=10)
    decisions = log.read(since, NOW)
    assert len(log.read()) == 31 and len(decisions) == 22
    report = build_report(decisions, embedder.encode, since, NOW, top=3)
    assert report["counts"] == {"answer": 10, "clarify": 2, "decline": 3, "handoff": 7, "unavailable": 0}
    assert report["shares"]["answer"] == round(10 / 22, 4) and report["shares"]["handoff"] == round(7 / 22, 4)
    assert [(r["reason"], r["count"]) for r in report["handoff_reasons"]] == [
        ("no_confident_answer", 5), ("customer_asked", 1), ("unsure_after_clarifying", 1)]
    assert report["unanswered"] == 11  # "talk to a person" is no question for the knowledge base
    assert report["groups"] == 4
    top = report["top_unanswered"]
    assert [(g["size"], g["question"]) for g in top] == [
        (5, "Do you offer mortgages?"), (2, "Can I invest in stocks with Nimbus?"),
        (2, "Can I open a joint account with my partner?")]
    assert sorted(top[0]["examples"]) == sorted(MORTGAGES[3:])
    text = format_report(report)
    assert "answer" in text and "45.5%" in text and "no_confident_answer" in text
    assert "1.     5 x  Do you offer mortgages?" in text and "also: What mortgage rates do you have?" in text


def test_groups_edge_cases(embedder) -> None:
    assert group_questions([], embedder.encode) == []
    [single] = group_questions(["Do you offer mortgages?"] * 2, embedder.encode)
    assert (single.size, single.question, single.examples) == (2, "Do you offer mortgages?", ())
    with pytest.raises(ReportError, match=r"similarity=1.5 is out of range; expected a cosine similarity in \(0, 1\]"):
        group_questions(["x"], embedder.encode, similarity=1.5)
    with pytest.raises(ReportError, match="top=0 is out of range"):
        build_report([], None, None, NOW, top=0)


def test_an_empty_period_needs_no_embedder() -> None:
    report = build_report([Decision("answer", "q", "card_arrival")], None, NOW - timedelta(days=1), NOW)
    assert report["shares"]["answer"] == 1.0 and report["top_unanswered"] == []
    assert format_report(build_report([], None, None, NOW)).endswith("(nothing recorded in this period)")


def test_bad_decisions_are_refused_and_text_is_masked(tmp_path: Path) -> None:
    with pytest.raises(EventLogError, match="decision 'maybe' is not one of"):
        Decision("maybe", "x")
    with pytest.raises(EventLogError, match="hand-off reason 'bored' is not one of"):
        Decision("handoff", "x", reason="bored")
    log = EventLog(tmp_path / "e.sqlite3")
    log.record(Decision("decline", "mail me at jane.doe@example.com or call +44 20 7946 0958"))
    assert log.read()[0].text == "mail me at [EMAIL] or call [PHONE]"
    assert b"jane.doe" not in (tmp_path / "e.sqlite3").read_bytes()


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name, value in {"CS_STATE_DIR": str(tmp_path), "CS_EMBEDDER": "all-MiniLM-L6-v2", "CS_RERANKER": "none",
                        "CS_INTENT_MODEL": "retrieval", "CS_TUNED_FILE": str(tmp_path / "tuned.json")}.items():
        monkeypatch.setenv(name, value)
    return tmp_path


def test_report_command_prints_json_for_the_period(cli_env: Path, capsys: pytest.CaptureFixture) -> None:
    constructed_log(cli_env / "events.sqlite3")
    assert main(["report", "--since", "2026-11-10", "--until", "2026-11-20T12:00:00Z", "--json", "--top", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["since"] == "2026-11-10T00:00:00.000000Z" and report["decisions"] == 22
    assert report["embedder"] == "all-MiniLM-L6-v2"
    assert [(g["size"], g["question"]) for g in report["top_unanswered"]] == [(5, "Do you offer mortgages?")]
    assert main(["report", "--days", "3", "--until", "2026-11-20T12:00:00+00:00"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Bot decisions from 2026-11-17T12:00:00.000000Z to 2026-11-20T12:00:00.000000Z: 22")


def test_report_command_without_a_log_says_so(cli_env: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["report"]) == 0
    captured = capsys.readouterr()
    assert "no event log at" in captured.err and ": 0 (nothing recorded in this period)" in captured.out
    assert not (cli_env / "events.sqlite3").exists()  # reading did not create it


@pytest.mark.parametrize(("argv", "message"), [
    (["report", "--since", "last tuesday"], "argument --since: 'last tuesday' is not an ISO 8601 date or time; "
                                            "expected e.g. 2026-11-01"),
    (["report", "--since", "2026-13-01"], "'2026-13-01' is not an ISO 8601 date or time"),
    (["report", "--days", "-2"], "argument --days: '-2' is not a number of days; expected a number > 0"),
    (["report", "--days", "3", "--since", "2026-11-01"], "argument --since: not allowed with argument --days"),
])
def test_bad_period_options_give_a_clear_error(cli_env: Path, capsys: pytest.CaptureFixture, argv: list[str],
                                               message: str) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_an_empty_period_is_an_error(cli_env: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["report", "--since", "2026-11-20", "--until", "2026-11-19"]) == 2
    assert "the period is empty: --since 2026-11-20T00:00:00+00:00 is not before" in capsys.readouterr().err


def test_help_lists_the_report_command(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["report", "--help"])
    assert "--since ISO" in capsys.readouterr().out
