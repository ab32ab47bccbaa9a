"""supervisord, the process supervisor behind ``make up``: its configuration and a small client.

supervisord (PyPI ``supervisor``) runs each service as its own program: a program that exits is
restarted while the others keep serving (``autorestart``); one that dies again within
``startsecs`` of a start is retried after 1, 2, 3 ... seconds (supervisord's back-off) up to
``startretries`` times. Programs do not start on their own (``autostart=false``): ``infra.stack``
starts them in order, Kafka first, once each dependency answers. supervisord listens only on a
Unix socket in ``var/run`` that only its owner may open (no TCP port).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from xmlrpc.client import Fault, ServerProxy

from infra.services import REPO_ROOT, Service

START_RETRIES = 20  # with supervisord's growing back-off: about 3.5 minutes of failed starts before FATAL
STOP_WAIT_S = 60    # SIGTERM, then SIGKILL to the program's process group after this long


class SupervisorError(RuntimeError):
    """supervisord could not be started, reached or told to do something."""


@dataclass(frozen=True)
class Paths:
    """Where supervisord keeps its configuration, socket, pid file and logs (under ``var/``)."""

    var_dir: Path

    @property
    def run_dir(self) -> Path:
        return self.var_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.var_dir / "log"

    @property
    def config(self) -> Path:
        return self.run_dir / "supervisord.conf"

    @property
    def socket(self) -> Path:
        return self.run_dir / "supervisor.sock"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "supervisord.pid"

    @property
    def log(self) -> Path:
        return self.log_dir / "supervisord.log"


def _escape(value: str) -> str:
    """supervisord expands ``%(name)s`` in its values: a literal ``%`` is ``%%``."""
    return value.replace("%", "%%")


def _quote(value: str) -> str:
    return '"' + _escape(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(paths: Paths, services: list[Service], environment: dict[str, str]) -> str:
    """supervisord.conf for ``services``; ``environment`` is added to every program's inherited one."""
    env_line = ",".join(f"{key}={_quote(value)}" for key, value in sorted(environment.items()))
    sections = [
        f"""; written by infra/supervisor.py for `make up`; edits are overwritten
[unix_http_server]
file={_escape(str(paths.socket))}
chmod=0700

[supervisord]
logfile={_escape(str(paths.log))}
logfile_maxbytes=10MB
logfile_backups=3
pidfile={_escape(str(paths.pid_file))}
directory={_escape(str(REPO_ROOT))}
childlogdir={_escape(str(paths.log_dir))}
identifier=textml

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{_escape(str(paths.socket))}
"""]
    for service in services:
        command = " ".join(_escape(_shell_word(word)) for word in service.command)
        user = f"user={_escape(service.user)}\n" if service.user else ""
        # a program run as another user (a data store) needs nothing from the checkout, which that user
        # may not be allowed to enter (a clone under /root): it starts in its own data folder's parent
        folder = paths.var_dir if service.user else REPO_ROOT
        sections.append(f"""[program:{service.name}]
command={command}
directory={_escape(str(folder))}
autostart=false
autorestart=true
startsecs={service.start_seconds}
startretries={START_RETRIES}
stopsignal={service.stop_signal}
stopwaitsecs={STOP_WAIT_S}
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile={_escape(str(paths.log_dir / f"{service.name}.log"))}
stdout_logfile_maxbytes=20MB
stdout_logfile_backups=3
environment={env_line}
{user}""")
    return "\n".join(sections)


def _shell_word(word: str) -> str:
    """supervisord splits ``command`` like a shell (shlex): quote words that need it."""
    return shlex.quote(word)


class Supervisor:
    """Start, ask and stop the supervisord of one ``var/`` folder over its Unix socket (XML-RPC)."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths

    def _proxy(self) -> ServerProxy:
        from supervisor.xmlrpc import SupervisorTransport

        transport = SupervisorTransport(None, None, f"unix://{self.paths.socket}")
        return ServerProxy("http://127.0.0.1", transport=transport)

    def pid(self) -> int | None:
        """supervisord's pid while it runs (a stale pid file naming another process does not count)."""
        try:
            pid = int(self.paths.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (FileNotFoundError, ValueError):
            return None
        return pid if b"supervisord" in cmdline and str(self.paths.config).encode() in cmdline else None

    def start(self, config_text: str, timeout_s: float = 30.0) -> int:
        """Write the configuration and start supervisord (it daemonizes), or reload a running one's programs."""
        self.paths.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.paths.log_dir.mkdir(parents=True, exist_ok=True)
        changed = not self.paths.config.is_file() or self.paths.config.read_text() != config_text
        self.paths.config.write_text(config_text)
        pid = self.pid()
        if pid is not None:
            if changed:
                self._apply_config_changes()
            return pid
        supervisord = Path(sys.executable).with_name("supervisord")
        result = subprocess.run([str(supervisord), "-c", str(self.paths.config)], capture_output=True, text=True,
                                cwd=REPO_ROOT, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise SupervisorError(f"supervisord did not start (exit {result.returncode}): "
                                  f"{(result.stdout + result.stderr).strip()}; see {self.paths.log}")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.pid() is not None and self.answers():
                return self.pid()
            time.sleep(0.2)
        raise SupervisorError(f"supervisord did not answer on {self.paths.socket} within {timeout_s:.0f} s; "
                              f"see {self.paths.log}")

    def _apply_config_changes(self) -> None:
        added, changed, removed = self._call("reloadConfig")[0]
        for name in removed + changed:
            try:
                self._proxy().supervisor.stopProcessGroup(name)
            except Fault:
                pass
            self._proxy().supervisor.removeProcessGroup(name)
        for name in added + changed:
            self._proxy().supervisor.addProcessGroup(name)

    def answers(self) -> bool:
        try:
            return self._proxy().supervisor.getState()["statename"] == "RUNNING"
        except (OSError, Fault):
            return False

    def _call(self, method: str, *args):
        try:
            return getattr(self._proxy().supervisor, method)(*args)
        except OSError as error:
            raise SupervisorError(f"supervisord does not answer on {self.paths.socket} ({error}); "
                                  "start the stack with `make up`") from None

    def processes(self) -> dict[str, dict]:
        """``name -> supervisord's process info`` (statename, pid, start, now, description, spawnerr)."""
        return {info["name"]: info for info in self._call("getAllProcessInfo")}

    def start_program(self, name: str) -> None:
        """Ask supervisord to start ``name`` without waiting for ``startsecs`` (already running: nothing)."""
        try:
            self._proxy().supervisor.startProcess(name, False)
        except Fault as fault:
            if "ALREADY_STARTED" not in fault.faultString:
                raise SupervisorError(f"supervisord could not start {name}: {fault.faultString}; "
                                      f"see {self.paths.log_dir / (name + '.log')}") from None

    def shutdown(self, timeout_s: float) -> bool:
        """Stop every program (SIGTERM to each process group, SIGKILL after ``stopwaitsecs``), then supervisord."""
        pid = self.pid()
        if pid is None:
            return False
        try:
            self._proxy().supervisor.stopAllProcesses(True)
            self._proxy().supervisor.shutdown()
        except (OSError, Fault):
            os.kill(pid, 15)
        deadline = time.monotonic() + timeout_s
        while self.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        if self.pid() is not None:
            os.kill(pid, 9)
        return True

    def spawn_counts(self) -> dict[str, int]:
        """How many times supervisord has started each program since supervisord itself started."""
        try:
            lines = self.paths.log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return {}
        started = max((i for i, line in enumerate(lines) if "supervisord started with pid" in line), default=0)
        counts: dict[str, int] = {}
        for line in lines[started:]:
            match = SPAWNED.search(line)
            if match:
                counts[match.group(1)] = counts.get(match.group(1), 0) + 1
        return counts


SPAWNED = re.compile(r"spawned: '([^']+)' with pid \d+")
