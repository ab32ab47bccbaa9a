"""The SQLite ticket store: create, list, extend, close; transcripts are masked before they are stored."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from apps.customer_service.__main__ import main
from apps.customer_service.tickets import (
    TicketClosedError,
    TicketError,
    TicketNotFoundError,
    TicketStore,
    parse_ticket_id,
)


def test_create_list_close_and_masking(tmp_path: Path) -> None:
    store = TicketStore(tmp_path / "t.sqlite3")
    ticket = store.create("alice", "customer asked for a person", [
        {"speaker": "user", "text": "my card 4111 1111 1111 1111 was charged twice, mail me at a@b.com"},
        {"speaker": "bot", "text": "I've passed our conversation on."},
    ])
    assert ticket.number == "T-000001" and ticket.status == "open"
    assert ticket.transcript[0]["text"] == "my card [CARD ****1111] was charged twice, mail me at [EMAIL]"
    raw = sqlite3.connect(tmp_path / "t.sqlite3").execute("SELECT transcript FROM tickets").fetchone()[0]
    assert "4111" not in raw.replace("****1111", "") and "a@b.com" not in raw
    second = store.create("bob", "no confident answer", [])
    assert [t.number for t in store.list()] == ["T-000001", "T-000002"]
    store.close(ticket.id)
    assert [t.id for t in store.list("open")] == [second.id]
    assert [t.id for t in store.list("closed")] == [ticket.id]
    assert len(store.list(None)) == 2


def test_bad_status_and_unknown_id(tmp_path: Path) -> None:
    store = TicketStore(tmp_path / "t.sqlite3")
    with pytest.raises(TicketError, match="status 'pending' is not a ticket status"):
        store.list("pending")
    with pytest.raises(TicketNotFoundError, match="no ticket with id 7"):
        store.close(7)
    ticket = store.create("dave", "r", [])
    store.close(ticket.id)
    with pytest.raises(TicketClosedError, match="ticket T-000001 is closed; only an open ticket can be answered"):
        store.close(ticket.id)
    with pytest.raises(TicketClosedError):
        store.extend(ticket.id, [{"speaker": "user", "text": "hi"}], None, 3)


def test_extend_masks_and_copies_once(tmp_path: Path) -> None:
    store = TicketStore(tmp_path / "t.sqlite3")
    ticket = store.create("erin", "r", [{"speaker": "user", "text": "help"}])
    turns = [{"speaker": "user", "text": "IBAN GB82 WEST 1234 5698 7654 32"}, {"speaker": "agent", "text": "ok"},
             {"speaker": "root", "text": "?"}]
    extended = store.extend(ticket.id, turns, None, 7)
    assert extended.tracker_cursor == 7 and extended.transcript[1:] == [
        {"speaker": "user", "text": "IBAN [IBAN GB…]"}, {"speaker": "agent", "text": "ok"},
        {"speaker": "?", "text": "?"}]
    # a second reader that read from the old cursor: its copy is dropped, not doubled
    assert store.extend(ticket.id, turns, None, 7).transcript == extended.transcript
    assert len(store.extend(ticket.id, turns[:1], 7, 9).transcript) == 5


def test_a_ticket_file_from_before_the_hand_over_gets_its_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE tickets (id INTEGER PRIMARY KEY AUTOINCREMENT, created_at TEXT NOT NULL, "
                   "sender_id TEXT NOT NULL, reason TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'open', "
                   "transcript TEXT NOT NULL)")
        db.execute("INSERT INTO tickets (created_at, sender_id, reason, transcript) VALUES ('t', 'old', 'r', '[]')")
    ticket = TicketStore(path).get(1)
    assert ticket.sender_id == "old" and ticket.tracker_cursor is None and ticket.closed_at is None
    assert TicketStore(path).close(1).closed_at


@pytest.mark.parametrize(("value", "expected"), [("42", 42), (42, 42), ("T-000042", 42), ("t-42", 42), (" 7 ", 7)])
def test_parse_ticket_id(value, expected) -> None:
    assert parse_ticket_id(value) == expected


@pytest.mark.parametrize("value", ["", "0", "T-", "forty-two", "42; DROP", "-1", "T-0"])
def test_parse_ticket_id_refuses(value) -> None:
    with pytest.raises(TicketError, match="is not a ticket id; expected a number such as 42"):
        parse_ticket_id(value)


def test_cli_lists_open_tickets(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    TicketStore(tmp_path / "tickets.sqlite3").create("carol", "customer asked for a person",
                                                     [{"speaker": "user", "text": "call +44 20 7946 0958"}])
    assert main(["--state", str(tmp_path), "tickets"]) == 0
    out = capsys.readouterr().out
    assert "T-000001" in out and "carol" in out and "[PHONE]" in out and "7946" not in out
    TicketStore(tmp_path / "tickets.sqlite3").close(1)
    assert main(["--state", str(tmp_path), "tickets"]) == 0
    assert "no open tickets" in capsys.readouterr().out
    assert main(["--state", str(tmp_path), "tickets", "--status", "closed", "--json"]) == 0
    assert '"number": "T-000001"' in capsys.readouterr().out
