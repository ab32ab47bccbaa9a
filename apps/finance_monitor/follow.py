"""`alerts`: print the alert history from SQLite, and with ``--follow`` keep printing new ones."""

from __future__ import annotations

import json
import sys
import threading
from typing import TextIO

from apps.finance_monitor.store import AlertStore


def format_alert(alert: dict) -> str:
    """A few lines a person reads in a terminal: headline, figures, the evidence quoted."""
    figures = "  ".join(f"{k}={v}" for k, v in alert["figures"].items())
    lines = [f"[{alert['ts']}] {alert['ticker']:6} {alert['rule']} ({alert['window']})  model {alert['model_version']}",
             f"    {figures}"]
    lines += [f"    - {e['id']}: {e['text']}" for e in alert["evidence"]]
    return "\n".join(lines)


def show_alerts(store: AlertStore, follow: bool = False, as_json: bool = False, last: int | None = None,
                poll_s: float = 1.0, out: TextIO = sys.stdout, stop: threading.Event | None = None) -> int:
    """Print the history (the ``last`` N, or all), then new alerts as they land when ``follow``; returns the count."""
    stop = stop or threading.Event()
    seq = 0
    if last is not None:
        seq = max(store.last_seq() - last, 0)
    shown = 0
    while True:
        for row_seq, alert in store.alerts_after(seq):
            seq = row_seq
            print(json.dumps(alert) if as_json else format_alert(alert), file=out, flush=True)
            shown += 1
        if not follow or stop.wait(poll_s):
            return shown
