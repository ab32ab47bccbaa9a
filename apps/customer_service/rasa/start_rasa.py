"""``rasa run`` with its HTTP API token from the environment (``CS_RASA_TOKEN``), not the command line.

Rasa 3.6 takes the API token only as ``--auth-token`` (``rasa/cli/arguments/run.py``; the server
compares it with the ``token`` query parameter, ``rasa/server.py``), and any user of the machine
can read a process's command line (``ps``, ``/proc/PID/cmdline``). This launcher appends the
option to ``sys.argv`` inside the process and calls Rasa's own entry point, so ``ps`` shows
``python -m start_rasa run --enable-api ...`` without the token. The variable is removed from the
environment before Rasa starts. ``rasa_project.server_command()`` runs it.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    token = os.environ.pop("CS_RASA_TOKEN", "")
    if not token:
        sys.exit("start_rasa: CS_RASA_TOKEN is not set; start the server with `python -m apps.customer_service rasa`, "
                 "which passes the token (CS_RASA_TOKEN or <state>/secrets/rasa_token)")
    # one argument, "--auth-token=TOKEN": a URL-safe token may start with "-", which argparse would
    # take for an option (and fail: "argument -t/--auth-token: expected one argument")
    sys.argv = ["rasa", *sys.argv[1:], f"--auth-token={token}"]
    from rasa.__main__ import main as rasa_main

    rasa_main()


if __name__ == "__main__":
    main()
