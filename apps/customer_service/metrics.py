"""Prometheus metrics of the action server: what the bot decided, for which intents, and how fast.

Served at ``GET /metrics`` on the action server, behind its token like every path but ``/`` and
``/health`` (``action_server.py``): the numbers show what customers ask about, which is the
bank's business, and nothing here needs to be public. Prometheus scrapes with
``authorization: {type: Bearer, credentials_file: .../secrets/actions_token}``.

Counters only, labelled with closed sets (decisions, hand-off reason codes, intent names, action
names): never a message text or anything else a customer typed.

| metric | labels | meaning |
|---|---|---|
| ``cs_decisions_total`` | ``decision`` | messages answered / clarified / declined / handed off / unavailable |
| ``cs_handoffs_total`` | ``reason`` | hand-offs by reason code (``events.HANDOFF_REASONS``) |
| ``cs_intent_decisions_total`` | ``intent`` | decisions per message intent (``nlu_fallback`` included) |
| ``cs_fallbacks_total`` | | decisions on messages Rasa's FallbackClassifier sent to retrieval |
| ``cs_action_seconds`` | ``action`` | histogram: time to run one action call |
| ``cs_action_failures_total`` | ``action`` | action calls that raised |

Fallback rate: ``sum(rate(cs_fallbacks_total[1h])) / sum(rate(cs_decisions_total[1h]))``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from apps.customer_service.events import DECISIONS, HANDOFF_REASONS, Decision

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FALLBACK_INTENT = "nlu_fallback"
INTENT_LABEL = re.compile(r"[A-Za-z][A-Za-z0-9_?]{0,63}")  # what an intent name looks like (knowledge_base.py)
MAX_INTENTS = 200  # distinct intent label values; more than the bot has, so a flood of made-up names stays bounded
OTHER = "other"


class BotMetrics:
    """The action server's counters and histogram, in their own registry (one per server, or per test)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.decisions = Counter("cs_decisions", "messages the bot decided on, by decision", ["decision"], registry=r)
        self.handoffs = Counter("cs_handoffs", "hand-offs to a person, by reason code", ["reason"], registry=r)
        self.intents = Counter("cs_intent_decisions", "decisions by the message's intent", ["intent"], registry=r)
        self.fallbacks = Counter("cs_fallbacks", "decisions on messages below the NLU fallback threshold",
                                 registry=r)
        self.latency = Histogram("cs_action_seconds", "time to run one action call", ["action"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.failures = Counter("cs_action_failures", "action calls that raised", ["action"], registry=r)
        self._intents: set[str] = set()
        for decision in DECISIONS:  # present from the start at 0, so rates work before the first message
            self.decisions.labels(decision)
        for reason in HANDOFF_REASONS:
            self.handoffs.labels(reason)

    def observe(self, decision: Decision) -> None:
        """Count one decision (its text is never looked at)."""
        self.decisions.labels(decision.decision).inc()
        if decision.decision == "handoff":
            self.handoffs.labels(decision.reason or OTHER).inc()
        self.intents.labels(self._intent_label(decision.intent)).inc()
        if decision.intent == FALLBACK_INTENT:
            self.fallbacks.inc()

    def _intent_label(self, intent: str | None) -> str:
        if not intent:
            return "none"
        if not INTENT_LABEL.fullmatch(intent):
            return OTHER
        if intent not in self._intents and len(self._intents) >= MAX_INTENTS:
            return OTHER
        self._intents.add(intent)
        return intent

    def timed(self, action: str, run: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        """``run`` (an action's ``run(dispatcher, tracker, domain)``) that observes its duration and failures.

        ``action`` (the label) is the action's name, from the code: one label value per registered action.
        """
        label = action
        self.latency.labels(label)  # shown at 0 before the first call
        self.failures.labels(label)

        async def timed_run(dispatcher, tracker, domain):
            started = time.perf_counter()
            try:
                return await run(dispatcher, tracker, domain)
            except Exception:
                self.failures.labels(label).inc()
                raise
            finally:
                self.latency.labels(label).observe(time.perf_counter() - started)

        return timed_run

    def render(self) -> tuple[bytes, str]:
        """The metrics in Prometheus' text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
