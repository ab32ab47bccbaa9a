"""``python -m infra.redis_server init|run|status``: Redis from Debian's packages for the bot's lock store.

``init`` writes ``$TEXTML_VAR_DIR/redis/redis.conf`` (mode 0600); ``run`` writes it when it can and
replaces itself with ``redis-server`` in the foreground (for supervisord, whose SIGKILL then hits the
server itself); ``status`` authenticates and sends ``PING`` over a plain socket.

Secure by default: bound to 127.0.0.1 with protected mode on, a password (``requirepass``) that is
only in the config file, never on a command line, and no Unix socket. As root, the server runs as
Debian's ``redis`` user (supervisord's ``user=``), which owns ``var/redis``.

Environment (read here only):
  REDIS_PORT      TCP port on 127.0.0.1 (default 6379)
  REDIS_PASSWORD  the password; default: generated into $TEXTML_VAR_DIR/secrets/redis_password (0600)
  TEXTML_VAR_DIR  runtime state of the project (default var/)
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from infra.datastores import DataStoreError, StoreCommands, check_traversable, own_folder, password, run_as, store_main

HOST = "127.0.0.1"
SECRET = "redis_password"
PASSWORD_VARIABLE = "REDIS_PASSWORD"


@dataclass(frozen=True)
class RedisConfig:
    """Where the server lives and listens; all paths absolute."""

    var: Path
    port: int = 6379
    binary: Path = Path("/usr/bin/redis-server")

    @property
    def home(self) -> Path:
        return self.var / "redis"

    @property
    def config_file(self) -> Path:
        return self.home / "redis.conf"

    @property
    def address(self) -> str:
        return f"redis://{HOST}:{self.port}"


def config_from_env(env: dict[str, str], var: Path) -> RedisConfig:
    port = env.get("REDIS_PORT", "6379")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise DataStoreError(f"REDIS_PORT={port!r} is not a TCP port; expected an integer 1..65535")
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    # not resolved: redis-server is a link to redis-check-rdb, and the name it runs under picks the mode
    return RedisConfig(var=var, port=int(port), binary=Path(binary))


def server_config(config: RedisConfig, secret: str) -> str:
    """redis.conf: loopback, protected mode, a password, data in ``var/redis``, logs to stdout."""
    lines = {
        "bind": HOST,
        "port": str(config.port),
        "protected-mode": "yes",
        "unixsocket": '""',  # no socket file: TCP on loopback, with the password, only
        "requirepass": secret,
        "dir": str(config.home),
        "daemonize": "no",
        "supervised": "no",
        "logfile": '""',  # stdout, into supervisord's log
        "set-proc-title": "no",  # keep the command line, by which `make down` finds a server started by hand
        "appendonly": "yes",  # locks survive a restart
    }
    return "# written by infra/redis_server.py; edits are overwritten\n" + \
        "".join(f"{key} {value}\n" for key, value in lines.items())


def init(config: RedisConfig, env: dict[str, str]) -> None:
    """Write the config file (mode 0600), owned by the account the server runs as."""
    if not config.binary.is_file():
        raise DataStoreError(f"no redis-server at {config.binary}; install it with `make datastores`")
    account = run_as("redis")
    try:
        secret = password(env, PASSWORD_VARIABLE, config.var, SECRET)
        own_folder(config.home, account)
    except PermissionError as error:
        raise DataStoreError(f"{error}; run `python -m infra.redis_server init` as the owner of {config.var} "
                             "(make up does)") from None
    check_traversable(config.config_file, account)
    temporary = config.config_file.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as stream:
        stream.write(server_config(config, secret))
    if account.user is not None:
        os.chown(temporary, account.uid, account.gid)
    os.replace(temporary, config.config_file)


def run(config: RedisConfig, env: dict[str, str]) -> None:
    """Write the config when this account can (else keep the one ``init`` wrote), then exec the server."""
    try:
        init(config, env)
    except DataStoreError:
        if not config.config_file.is_file():
            raise
    command = [str(config.binary), str(config.config_file)]
    if os.geteuid() == 0:
        account = run_as("redis")
        os.setgroups([])
        os.setgid(account.gid)
        os.setuid(account.uid)
    sys.stdout.flush()
    os.execv(command[0], command)


def _command(*words: str) -> bytes:
    """One Redis command in RESP: an array of bulk strings."""
    parts = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def ask(port: int, *commands: tuple[str, ...], timeout_s: float = 2.0) -> list[str]:
    """Send ``commands`` to 127.0.0.1:``port`` and return one reply line each (``+OK``, ``-NOAUTH ...``)."""
    with socket.create_connection((HOST, port), timeout=timeout_s) as connection:
        connection.sendall(b"".join(_command(*words) for words in commands))
        reader = connection.makefile("rb")
        return [reader.readline().decode(errors="replace").rstrip("\r\n") for _ in commands]


def answers(config: RedisConfig, env: dict[str, str], timeout_s: float = 2.0) -> bool:
    """True when ``AUTH`` with the password succeeds and ``PING`` answers ``PONG`` (the health check)."""
    try:
        secret = password(env, PASSWORD_VARIABLE, config.var, SECRET, create=False)
        return secret is not None and ask(config.port, ("AUTH", secret), ("PING",), timeout_s=timeout_s) == \
            ["+OK", "+PONG"]
    except (OSError, DataStoreError):
        return False


def _init_said(config: RedisConfig, env: dict[str, str]) -> str:
    init(config, env)
    return f"Redis configuration written to {config.config_file}"


def main(argv: list[str] | None = None) -> int:
    return store_main(StoreCommands(
        prog="python -m infra.redis_server", label="redis", description=__doc__, init_help="write redis.conf",
        status_help="say whether it answers AUTH + PING",
        config_from_env=config_from_env, init=_init_said, run=run, answers=answers),
        argv)

if __name__ == "__main__":
    sys.exit(main())
