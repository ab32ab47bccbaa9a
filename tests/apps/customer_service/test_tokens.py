"""Generated tokens: a 0600 file in a 0700 folder, reused on the next start, one token for racing starts."""

from __future__ import annotations

import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from apps.customer_service.settings import REPO_ROOT, BotSettings
from apps.customer_service.tokens import TokenFileError, actions_token, load_or_create, rasa_token


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_token_file_is_created_0600_and_reused(tmp_path: Path) -> None:
    settings = BotSettings(state_dir=tmp_path / "state")
    token = rasa_token(settings)
    path = tmp_path / "state" / "secrets" / "rasa_token"
    assert settings.rasa_token_file == path and path.read_text() == token + "\n"
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    assert len(token) >= 40 and rasa_token(settings) == token  # the next start reads the same one
    assert actions_token(settings) not in (token, "")  # a separate secret, its own file
    assert mode(settings.actions_token_file) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["actions_token", "rasa_token"]  # no temporary left


def test_environment_token_wins_and_writes_no_file(tmp_path: Path) -> None:
    settings = replace(BotSettings(state_dir=tmp_path), rasa_token="x" * 20, actions_token="y" * 20)
    assert (rasa_token(settings), actions_token(settings)) == ("x" * 20, "y" * 20)
    assert not settings.secrets_dir.exists()
    assert "x" * 20 not in repr(settings)


def test_unsafe_or_broken_token_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "rasa_token"
    load_or_create(path)
    path.chmod(0o644)
    with pytest.raises(TokenFileError, match=r"mode 0644, readable by other users; expected 0600: run `chmod 600"):
        load_or_create(path)
    path.write_text("short\n")
    path.chmod(0o600)
    with pytest.raises(TokenFileError, match="does not hold a token") as error:
        load_or_create(path)
    assert "short" not in str(error.value)


RACE = """
import sys
from pathlib import Path
from apps.customer_service.tokens import load_or_create
print(load_or_create(Path(sys.argv[1])))
"""


def test_concurrent_starts_agree_on_one_token(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "actions_token"
    processes = [subprocess.Popen([sys.executable, "-c", RACE, str(path)], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                  text=True) for _ in range(6)]
    tokens = {process.communicate(timeout=60)[0].strip() for process in processes}
    assert tokens == {path.read_text().strip()}
