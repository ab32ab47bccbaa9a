"""The Rasa launcher hands the API token over as one argument, whatever characters it starts with."""

from __future__ import annotations

import argparse
import os
import sys
import types

import pytest

from apps.customer_service.rasa_project import TEMPLATE


def test_a_token_starting_with_a_dash_reaches_rasa(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}

    def rasa_main() -> None:  # parses --auth-token as Rasa 3.6 does (one value)
        parser = argparse.ArgumentParser()
        parser.add_argument("command")
        parser.add_argument("-t", "--auth-token")
        seen["token"] = parser.parse_args(sys.argv[1:]).auth_token

    monkeypatch.setitem(sys.modules, "rasa", types.ModuleType("rasa"))
    monkeypatch.setitem(sys.modules, "rasa.__main__", types.SimpleNamespace(main=rasa_main))
    monkeypatch.syspath_prepend(str(TEMPLATE))
    monkeypatch.setenv("CS_RASA_TOKEN", "-Ab3_secret-token-0123")
    monkeypatch.setattr(sys, "argv", ["start_rasa", "run"])
    import start_rasa

    start_rasa.main()
    assert seen["token"] == "-Ab3_secret-token-0123"
    assert "CS_RASA_TOKEN" not in os.environ  # removed before Rasa starts
