"""The bot's shared secrets: Rasa's HTTP API token, the action server's token and the agents' (staff) token.

Each comes from its environment variable (``CS_RASA_TOKEN``, ``CS_ACTIONS_TOKEN``, ``CS_STAFF_TOKEN``; read by
``settings.py``) or, when that is unset, from a file under ``<state>/secrets/`` that the first
process needing it creates: ``secrets.token_urlsafe(32)`` (43 characters), mode 0600 in a 0700
folder, written to a temporary file and hard-linked into place. The link never replaces an
existing file, so the action server and the Rasa server, which start together, agree on one token;
later starts reuse it. A token file that other users can read is refused (``chmod 600`` fixes it).

Tokens are never logged, and error messages name the file, not the token. Read one with
``cat var/customer_service/secrets/rasa_token``.
"""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
from pathlib import Path

from apps.customer_service.settings import TOKEN, BotSettings


class TokenFileError(RuntimeError):
    """A token file that cannot be used: readable by others, not a token, or not writable."""


def rasa_token(settings: BotSettings) -> str:
    """The Rasa HTTP API token: ``CS_RASA_TOKEN``, else ``<state>/secrets/rasa_token`` (created if missing)."""
    return settings.rasa_token or load_or_create(settings.rasa_token_file)


def actions_token(settings: BotSettings) -> str:
    """The action server token: ``CS_ACTIONS_TOKEN``, else ``<state>/secrets/actions_token`` (created if missing)."""
    return settings.actions_token or load_or_create(settings.actions_token_file)


def staff_token(settings: BotSettings) -> str:
    """The agents' token for the action server's ``/tickets`` endpoints: ``CS_STAFF_TOKEN``, else
    ``<state>/secrets/staff_token`` (created if missing). Distinct from the action server token, so Rasa's
    credential cannot answer customers and an agent's cannot run actions."""
    return settings.staff_token or load_or_create(settings.staff_token_file)


def load_or_create(path: Path) -> str:
    """The token stored at ``path``; a new random one, stored there with mode 0600, if there is none."""
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    folder = path.parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    token = secrets.token_urlsafe(32)
    descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.")  # mkstemp: mode 0600
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(token + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)  # atomic, and never replaces a token another process stored first
        except FileExistsError:
            return _read(path)
        except OSError as error:
            raise TokenFileError(f"cannot store a token at {path} ({error}); set the token in the environment "
                                 "instead (CS_RASA_TOKEN / CS_ACTIONS_TOKEN / CS_STAFF_TOKEN)") from None
    finally:
        os.unlink(temporary)
    return token


def _read(path: Path) -> str:
    mode = path.stat().st_mode  # FileNotFoundError: the caller creates it
    if stat.S_IMODE(mode) & 0o077:
        raise TokenFileError(f"{path} has mode {stat.S_IMODE(mode):04o}, readable by other users; expected 0600: "
                             f"run `chmod 600 {path}` (or delete it to have a new token generated)")
    token = path.read_text(encoding="ascii", errors="replace").strip()
    if not TOKEN.fullmatch(token):
        raise TokenFileError(f"{path} does not hold a token (at least 16 URL-safe characters); delete it to have a "
                             "new one generated")
    return token
