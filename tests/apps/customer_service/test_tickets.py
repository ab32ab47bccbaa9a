"""The SQLite ticket store: create, list, close; transcripts are masked before they are stored."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from apps.customer_service.__main__ import main
from apps.customer_service.tickets import TicketError, TicketStore


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
    with pytest.raises(TicketError, match="no ticket with id 7"):
        store.close(7)


def test_cli_lists_open_tickets(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    TicketStore(tmp_path / "tickets.sqlite3").create("carol", "customer asked for a person",
                                                     [{"speaker": "user", "text": "call +44 20 7946 0958"}])
    assert main(["--state", str(tmp_path), "tickets"]) == 0
    out = capsys.readouterr().out
    assert "T-000001" in out and "carol" in out and "[PHONE]" in out and "7946" not in out
    assert main(["--state", str(tmp_path), "tickets", "--close", "1"]) == 0
    assert main(["--state", str(tmp_path), "tickets"]) == 0
    assert "no open tickets" in capsys.readouterr().out
    assert main(["--state", str(tmp_path), "tickets", "--close", "9"]) == 2
    assert "no ticket with id 9" in capsys.readouterr().err
