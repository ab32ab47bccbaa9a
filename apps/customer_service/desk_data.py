"""What the support desk shows, as one JSON-ready dict: a pure function of the decisions, tickets and latency.

``desk.py`` reads the event log, the ticket store and the latency samples, and passes them here;
this module computes the figures and draws the charts (``desk_charts.py``), without HTTP or disk,
so tests call it with constructed data.

* decisions in the period: count and share of each (answer / clarify / decline / handoff /
  unavailable), and per time bucket for the chart (1 h in 5-minute buckets, 24 h hourly, 7 d in
  6-hour buckets; UTC);
* the open tickets, newest first, each with its stored (masked) transcript, the last
  ``MAX_TURNS`` turns (the staff endpoint ``GET /tickets/{id}`` gives the whole, current one);
* latency since the server started and per sampling interval (``desk_latency.py``);
* the unanswered questions by meaning, as ``desk_unanswered.py`` has them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apps.customer_service.desk_charts import latency_chart, shares_chart
from apps.customer_service.events import DECISIONS, Decision, iso
from apps.customer_service.tickets import Ticket

MAX_TURNS = 30  # transcript turns per ticket in the list
MAX_TICKETS = 200  # open tickets in the list (newest first)


class DeskError(ValueError):
    """A desk request with a value out of range."""


@dataclass(frozen=True)
class Period:
    name: str
    span: timedelta
    bucket: timedelta
    label_format: str  # strftime of a bucket's start on the chart

    def buckets(self, now: datetime) -> list[datetime]:
        """The buckets' starts, oldest first; the last one holds ``now``."""
        size = int(self.bucket.total_seconds())
        last = datetime.fromtimestamp(int(now.timestamp()) // size * size, UTC)
        count = int(self.span / self.bucket)
        return [last - self.bucket * (count - 1 - i) for i in range(count)]


PERIODS = {
    "1h": Period("1h", timedelta(hours=1), timedelta(minutes=5), "%H:%M"),
    "24h": Period("24h", timedelta(hours=24), timedelta(hours=1), "%H:%M"),
    "7d": Period("7d", timedelta(days=7), timedelta(hours=6), "%a %H:%M"),
}
DEFAULT_PERIOD = "24h"


def parse_period(value: str | None) -> Period:
    """A period from the page's picker: ``1h``, ``24h`` (default) or ``7d``."""
    name = DEFAULT_PERIOD if value in (None, "") else value
    if name not in PERIODS:
        raise DeskError(f"period {str(value)[:20]!r} is not one of {', '.join(PERIODS)}; expected e.g. ?period=24h")
    return PERIODS[name]


def share_series(decisions: Sequence[Decision], period: Period, now: datetime) -> list[dict]:
    """Per bucket (oldest first): its start, chart label, message count and count per decision.

    Decisions outside the buckets (before the first, or in the future) are left out.
    """
    starts = period.buckets(now)
    first, size = starts[0], period.bucket
    counts: list[Counter] = [Counter() for _ in starts]
    for decision in decisions:
        index = int((decision.at - first) / size) if decision.at >= first else -1
        if 0 <= index < len(starts):
            counts[index][decision.decision] += 1
    return [{"start": iso(start), "label": start.strftime(period.label_format), "total": sum(c.values()),
             "counts": {d: c.get(d, 0) for d in DECISIONS}} for start, c in zip(starts, counts, strict=True)]


def ticket_row(ticket: Ticket, now: datetime) -> dict:
    """A ticket for the list: number, when (and how long ago) it opened, reason, the last turns."""
    opened = datetime.fromisoformat(ticket.created_at.replace("Z", "+00:00"))
    opened = opened.replace(tzinfo=UTC) if opened.tzinfo is None else opened
    return {"number": ticket.number, "id": ticket.id, "created_at": ticket.created_at, "reason": ticket.reason,
            "waiting_min": max(0, int((now - opened).total_seconds() // 60)), "turns": len(ticket.transcript),
            "transcript": ticket.transcript[-MAX_TURNS:]}


def build_desk(decisions: Sequence[Decision], open_tickets: Sequence[Ticket], period: Period, now: datetime,
               latency_points: Sequence[dict], latency_summary: dict, unanswered: dict) -> dict:
    """The desk's figures and charts for ``period`` ending ``now`` (``decisions``: those in the period)."""
    counts = Counter(d.decision for d in decisions)
    total = sum(counts.values())
    series = share_series(decisions, period, now)
    points = [p | {"label": datetime.fromisoformat(p["at"].replace("Z", "+00:00")).strftime("%H:%M")}
              for p in latency_points]
    newest = sorted(open_tickets, key=lambda t: t.id, reverse=True)[:MAX_TICKETS]
    return {
        "period": period.name, "since": iso(now - period.span), "until": iso(now), "decisions": total,
        "counts": {d: counts.get(d, 0) for d in DECISIONS},
        "shares": {d: round(counts.get(d, 0) / total, 4) if total else 0.0 for d in DECISIONS},
        "series": series,
        "latency": {"summary": latency_summary, "points": points},
        "open_tickets": len(open_tickets), "tickets": [ticket_row(t, now) for t in newest],
        "unanswered": unanswered,
        "charts": {"shares": shares_chart(series, DECISIONS), "latency": latency_chart(points)},
    }
