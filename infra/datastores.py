"""What the optional data stores (``infra.postgres``, ``infra.redis_server``) share.

Passwords: taken from an environment variable, or generated on first use into
``$TEXTML_VAR_DIR/secrets/NAME`` (file 0600, folder 0700), never put on a command line. Users: a
server must not run as root, so as root it runs as its Debian system user (``postgres``, ``redis``)
and its folders under ``var/`` belong to that user; every folder above them must let it through.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class DataStoreError(RuntimeError):
    """A data store could not be prepared, started or reached; the message says what to do."""


def password(env: dict[str, str], variable: str, var: Path, name: str, create: bool = True) -> str | None:
    """``env[variable]`` when set, else the password in ``var/secrets/name``, generated the first time
    (``create``; without it: None when there is none yet or it cannot be read)."""
    if env.get(variable):
        if "\n" in env[variable] or "\0" in env[variable]:
            raise DataStoreError(f"{variable} contains a line break or NUL; choose a password without them")
        return env[variable]
    path = var / "secrets" / name
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        if not create:
            return None
    except PermissionError:
        if not create:
            return None
        raise DataStoreError(f"{path} is not readable by this user; run as its owner (see ls -l {path})") from None
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    value = secrets.token_urlsafe(32)  # 43 url-safe characters: nothing to quote in a config file
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as stream:
        stream.write(value + "\n")
    os.replace(temporary, path)
    return value


@dataclass(frozen=True)
class RunAs:
    """The account a server runs as: ``user`` None means the current one (not root)."""

    user: str | None
    uid: int
    gid: int

    @property
    def name(self) -> str:
        return self.user or pwd.getpwuid(self.uid).pw_name


def run_as(system_user: str) -> RunAs:
    """The current account, or ``system_user`` when running as root (servers refuse or should not run as root)."""
    if os.geteuid() != 0:
        return RunAs(None, os.geteuid(), os.getegid())
    try:
        entry = pwd.getpwnam(system_user)
    except KeyError:
        raise DataStoreError(f"running as root, but there is no system user {system_user!r} to run the server as; "
                             "install the Debian package with `make datastores`") from None
    return RunAs(system_user, entry.pw_uid, entry.pw_gid)


def own_folder(path: Path, account: RunAs, mode: int = 0o700) -> None:
    """Create ``path`` (and its parents) and give it to ``account`` with ``mode``."""
    path.mkdir(parents=True, exist_ok=True)
    if account.user is not None and (path.stat().st_uid, path.stat().st_gid) != (account.uid, account.gid):
        shutil.chown(path, account.uid, account.gid)
    os.chmod(path, mode)


def check_traversable(path: Path, account: RunAs) -> None:
    """Fail unless ``account`` may pass through every folder above ``path`` (needed when it is not us)."""
    if account.user is None:
        return
    groups = {account.gid, *(g for g in os.getgrouplist(account.name, account.gid))}
    for folder in reversed(path.parents):
        if not folder.exists():
            break  # the rest is created for the account
        info = folder.stat()
        if info.st_uid == account.uid:
            allowed = info.st_mode & 0o100
        elif info.st_gid in groups:
            allowed = info.st_mode & 0o010
        else:
            allowed = info.st_mode & 0o001
        if not allowed:
            raise DataStoreError(f"{folder} (mode {info.st_mode & 0o777:o}) does not let the {account.name!r} user "
                                 f"reach {path}; allow it with `chmod o+x {folder}`, or set TEXTML_VAR_DIR to a "
                                 "folder it can reach")


@dataclass(frozen=True)
class StoreCommands:
    """One data store's ``python -m`` command line: how to configure, prepare, run and probe it."""

    prog: str
    label: str                                   # its name in status lines, e.g. "postgres"
    description: str
    init_help: str
    status_help: str
    config_from_env: Callable[[dict[str, str], Path], Any]
    init: Callable[[Any, dict[str, str]], str]   # returns what it did, for people
    run: Callable[[Any, dict[str, str]], None]
    answers: Callable[[Any, dict[str, str]], bool]


def store_main(commands: StoreCommands, argv: list[str] | None = None) -> int:
    """``init|run|status`` for a data store; errors are printed with what to do, exit code 1."""
    import argparse
    import sys

    from infra.services import var_dir

    parser = argparse.ArgumentParser(prog=commands.prog, description=commands.description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["init", "run", "status"],
                        help=f"init: {commands.init_help}; run: the server in the foreground (for supervisord); "
                             f"status: {commands.status_help}")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    try:
        config = commands.config_from_env(env, var_dir(env))
        if args.command == "init":
            print(commands.init(config, env))
        elif args.command == "run":
            commands.run(config, env)
        else:
            ok = commands.answers(config, env)
            print(f"{commands.label:9} {'up' if ok else 'down':5} {config.address}")
            return 0 if ok else 3
    except DataStoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
