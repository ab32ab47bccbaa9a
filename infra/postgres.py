"""``python -m infra.postgres init|run|status``: PostgreSQL from Debian's packages for the bot's tracker store.

``init`` creates the cluster once in ``$TEXTML_VAR_DIR/postgres/data`` with a role and a database
both named ``rasa``; ``run`` replaces itself with the server in the foreground (for supervisord,
whose SIGKILL then hits the server itself); ``status`` runs ``SELECT 1`` as ``rasa`` over TCP.

Secure by default: the server listens on 127.0.0.1 only, its Unix socket lives in
``var/postgres/socket`` (mode 0700), and ``pg_hba.conf`` admits only ``rasa`` to ``rasa`` with a
password (SCRAM-SHA-256) plus the cluster's superuser over the socket by peer authentication;
everyone else is refused. PostgreSQL refuses to run as root: as root, the cluster belongs to and
runs as Debian's ``postgres`` user (supervisord's ``user=``; ``run`` started by hand as root
switches to it before ``exec``).

Environment (read here only):
  POSTGRES_PORT      TCP port on 127.0.0.1 (default 5432)
  POSTGRES_PASSWORD  the ``rasa`` role's password at the first ``init``; default: generated into
                     $TEXTML_VAR_DIR/secrets/postgres_password (mode 0600)
  TEXTML_VAR_DIR     runtime state of the project (default var/)
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from infra.datastores import (
    DataStoreError,
    RunAs,
    StoreCommands,
    check_traversable,
    own_folder,
    password,
    run_as,
    store_main,
)

PACKAGES = Path("/usr/lib/postgresql")
HOST = "127.0.0.1"
NAME = "rasa"  # the role and the database
SECRET = "postgres_password"
PASSWORD_VARIABLE = "POSTGRES_PASSWORD"

PG_HBA = """\
# written by infra/postgres.py: the superuser by peer over the socket, `rasa` with a password; nobody else
# TYPE  DATABASE  USER         ADDRESS       METHOD
local   all       {superuser}  peer
local   {name}    {name}       scram-sha-256
host    {name}    {name}       127.0.0.1/32  scram-sha-256
host    {name}    {name}       ::1/128       scram-sha-256
"""


def bin_dir(packages: Path = PACKAGES) -> Path:
    """The ``bin`` folder of the highest PostgreSQL version installed from Debian's packages."""
    versions = sorted((p for p in packages.glob("*/bin") if (p / "postgres").is_file() and p.parent.name.isdigit()),
                      key=lambda p: int(p.parent.name))
    if not versions:
        raise DataStoreError(f"no PostgreSQL server in {packages}/VERSION/bin; install it with `make datastores`")
    return versions[-1]


@dataclass(frozen=True)
class PostgresConfig:
    """Where the cluster lives and listens; all paths absolute."""

    var: Path
    port: int = 5432
    bin: Path = PACKAGES / "15" / "bin"

    @property
    def home(self) -> Path:
        return self.var / "postgres"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def socket_dir(self) -> Path:
        return self.home / "socket"

    @property
    def address(self) -> str:
        return f"postgresql://{NAME}@{HOST}:{self.port}/{NAME}"


def config_from_env(env: dict[str, str], var: Path, packages: Path = PACKAGES) -> PostgresConfig:
    port = env.get("POSTGRES_PORT", "5432")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise DataStoreError(f"POSTGRES_PORT={port!r} is not a TCP port; expected an integer 1..65535")
    try:
        binaries = bin_dir(packages)
    except DataStoreError:
        binaries = PACKAGES / "15" / "bin"  # configuration stays possible; init/run say what is missing
    return PostgresConfig(var=var, port=int(port), bin=binaries)


def server_command(config: PostgresConfig) -> list[str]:
    """The server's command line: settings on it, so that one cluster can move to another port."""
    return [str(config.bin / "postgres"), "-D", str(config.data_dir),
            "-c", f"listen_addresses={HOST}", "-c", f"port={config.port}",
            "-c", f"unix_socket_directories={config.socket_dir}", "-c", "password_encryption=scram-sha-256"]


def _as(account: RunAs, command: list[str], cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    switch = {} if account.user is None else {"user": account.uid, "group": account.gid, "extra_groups": []}
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
    return subprocess.run(command, input=stdin, capture_output=True, text=True, cwd=cwd, env=env, **switch)


def init(config: PostgresConfig, env: dict[str, str]) -> bool:
    """Create the cluster, the ``rasa`` role and database once (False: it already exists)."""
    if not (config.bin / "postgres").is_file():
        raise DataStoreError(f"no PostgreSQL server at {config.bin}; install it with `make datastores`")
    account = run_as("postgres")
    try:
        secret = password(env, PASSWORD_VARIABLE, config.var, SECRET)
        own_folder(config.home, account)
        own_folder(config.socket_dir, account)
        check_traversable(config.data_dir, account)
    except PermissionError as error:
        raise DataStoreError(f"{error}; run `python -m infra.postgres init` as the owner of {config.var} "
                             "(make up does)") from None
    if (config.data_dir / "PG_VERSION").is_file():
        return False
    staging = config.home / "data.init"  # initdb into a fresh folder, renamed into place once complete
    if staging.exists():
        _as(account, ["rm", "-rf", str(staging)], config.home)
    created = _as(account, [str(config.bin / "initdb"), "-D", str(staging), f"--username={account.name}",
                            "--auth-local=peer", "--auth-host=scram-sha-256", "--encoding=UTF8", "--no-locale"],
                  config.home)
    if created.returncode != 0:
        raise DataStoreError(f"initdb failed (exit {created.returncode}):\n{created.stdout}{created.stderr}")
    hba = PG_HBA.format(superuser=account.name, name=NAME)
    _as(account, ["tee", str(staging / "pg_hba.conf")], config.home, stdin=hba)
    quoted = secret.replace("'", "''")
    # single-user mode reads one statement a line from stdin: the password never reaches a command line
    sql = f"CREATE ROLE {NAME} LOGIN PASSWORD '{quoted}';\nCREATE DATABASE {NAME} OWNER {NAME};\n"
    made = _as(account, [str(config.bin / "postgres"), "--single", "-D", str(staging),
                         "-c", "password_encryption=scram-sha-256", "postgres"], config.home, stdin=sql)
    if made.returncode != 0 or "ERROR" in made.stdout + made.stderr:
        raise DataStoreError(f"creating the {NAME!r} role and database failed:\n{made.stdout}{made.stderr}")
    os.replace(staging, config.data_dir)
    return True


def run(config: PostgresConfig, env: dict[str, str]) -> None:
    """Initialize if needed, then replace this process with the server (as ``postgres`` when root)."""
    if not (config.data_dir / "PG_VERSION").is_file() or os.geteuid() == 0:
        init(config, env)
    command = server_command(config)
    if os.geteuid() == 0:
        account = run_as("postgres")
        os.setgroups([])
        os.setgid(account.gid)
        os.setuid(account.uid)
    sys.stdout.flush()
    os.execv(command[0], command)


def psql(config: PostgresConfig, secret: str, sql: str, role: str = NAME,
         timeout_s: float = 5.0) -> subprocess.CompletedProcess:
    """Run ``sql`` as ``role`` over TCP on 127.0.0.1 with password ``secret`` (in psql's environment only)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PGPASSWORD": secret,
           "PGCONNECT_TIMEOUT": str(max(1, int(timeout_s))), "LC_ALL": "C.UTF-8"}
    command = [str(config.bin / "psql"), "-X", "-A", "-t", "-q", "-w", "-h", HOST, "-p", str(config.port),
               "-U", role, "-d", NAME, "-c", sql]
    try:
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout_s + 2,
                              stdin=subprocess.DEVNULL)
    except (subprocess.TimeoutExpired, FileNotFoundError) as error:
        return subprocess.CompletedProcess(command, 1, "", str(error))


def answers(config: PostgresConfig, env: dict[str, str], timeout_s: float = 2.0) -> bool:
    """True when ``rasa`` logs in with its password over TCP and ``SELECT 1`` returns 1 (the health check)."""
    try:
        secret = password(env, PASSWORD_VARIABLE, config.var, SECRET, create=False)
    except DataStoreError:
        return False
    if secret is None:
        return False
    result = psql(config, secret, "SELECT 1", timeout_s=timeout_s)
    return result.returncode == 0 and result.stdout.strip() == "1"


def _init_said(config: PostgresConfig, env: dict[str, str]) -> str:
    return f"PostgreSQL cluster {'created' if init(config, env) else 'already'} in {config.data_dir}"


def main(argv: list[str] | None = None) -> int:
    return store_main(StoreCommands(
        prog="python -m infra.postgres", label="postgres", description=__doc__, init_help="create the cluster once",
        status_help="say whether `rasa` can log in and query",
        config_from_env=config_from_env, init=_init_said, run=run, answers=answers),
        argv)

if __name__ == "__main__":
    sys.exit(main())
