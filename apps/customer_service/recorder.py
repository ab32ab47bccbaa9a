"""Where the actions report each decision: counted in the metrics and appended to the event log.

The actions get one :class:`DecisionRecorder` (``make_actions``); without one they record nothing,
which is what unit tests of other behaviour want. Recording never stops a reply: a failure to
write the event log is logged (masked, like every log record) and the customer still gets the
answer.
"""

from __future__ import annotations

import logging
import sqlite3

from apps.customer_service.events import Decision, EventLog
from apps.customer_service.metrics import BotMetrics

log = logging.getLogger(__name__)


class DecisionRecorder:
    def __init__(self, events: EventLog | None = None, metrics: BotMetrics | None = None) -> None:
        self.events = events
        self.metrics = metrics

    def record(self, decision: Decision) -> None:
        if self.metrics is not None:
            self.metrics.observe(decision)
        if self.events is not None:
            try:
                self.events.record(decision)
            except (sqlite3.Error, OSError):
                log.exception("could not write the %s decision to the event log %s", decision.decision,
                              self.events.path)
