"""Run the stream and kill this process with SIGKILL inside the N-th batch's transaction.

The batch's records are sent and acknowledged (in the log, not committed) and its SQLite
transaction is done; only ``commit_transaction`` is missing. Used by test_exactly_once.py:

    python tests/apps/finance_monitor/crash_mid_batch.py CONFIG_JSON N
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from apps.finance_monitor.service import build_stream  # noqa: E402
from apps.finance_monitor.settings import StreamConfig  # noqa: E402
from apps.finance_monitor.stream import StreamProcessor  # noqa: E402


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    values = json.loads(sys.argv[1])
    die_at = int(sys.argv[2])
    paths = {"registry_root", "rules_path", "tickers_path", "db_path"}
    config = StreamConfig(**{k: Path(v) if k in paths and v else v for k, v in values.items()})
    commits = 0
    original = StreamProcessor._commit_transaction

    def commit_or_die(self: StreamProcessor) -> None:
        nonlocal commits
        commits += 1
        if commits == die_at:
            print(f"killing myself before committing batch {commits}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        original(self)

    StreamProcessor._commit_transaction = commit_or_die
    build_stream(config).run()


if __name__ == "__main__":
    main()
