"""Server-side SVG charts for the support desk: no JavaScript chart library, nothing from a CDN.

Each function takes the desk's JSON-ready figures and returns one ``<svg>`` string that scales to
its container (``viewBox``, width 100%). The charts are images for people who can see them:
``role="img"`` with a title and a one-sentence description, and a ``<title>`` on every bar or
point (shown on hover); the page repeats the same figures as a table for screen readers and
keyboard users. Colours are dark enough for 3:1 contrast on white (WCAG 1.4.11), and the legend
names each one, so colour is never the only key. Every text goes through ``html.escape``.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 60, 12, 30, 36  # margins: y labels, legend, x labels
COLOURS = {"answer": "#1f5fa8", "clarify": "#a85300", "decline": "#6a3d9a", "handoff": "#b3261e",
           "unavailable": "#4d4d4d"}
LABELS = {"answer": "answered", "clarify": "clarified", "decline": "declined", "handoff": "handed off",
          "unavailable": "unavailable"}
LINES = {"p50_ms": ("#1f5fa8", "p50"), "p95_ms": ("#b3261e", "p95")}


def _svg(title: str, description: str, body: list[str], chart_id: str) -> str:
    return (f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" aria-labelledby="{chart_id}-t {chart_id}-d"'
            f' xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif" font-size="14">'
            f'<title id="{chart_id}-t">{escape(title)}</title><desc id="{chart_id}-d">{escape(description)}</desc>'
            + "".join(body) + "</svg>")


def _legend(items: Sequence[tuple[str, str]]) -> list[str]:
    parts, x = [], LEFT
    for colour, label in items:
        parts.append(f'<rect x="{x}" y="8" width="12" height="12" fill="{colour}"/>'
                     f'<text x="{x + 16}" y="18" fill="#1a1a1a">{escape(label)}</text>')
        x += 26 + 8 * len(label)
    return parts


def _x_labels(labels: Sequence[str], xs: Sequence[float], most: int = 8) -> list[str]:
    step = max(1, -(-len(labels) // most))  # ceil: at most ``most`` labels
    return [f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" fill="#1a1a1a">{escape(label)}</text>'
            for i, (label, x) in enumerate(zip(labels, xs, strict=True)) if i % step == 0]


def _frame(y_ticks: Sequence[tuple[float, str]]) -> list[str]:
    """Horizontal grid lines with their labels; ``y_ticks``: (fraction of the plot height, label)."""
    plot = HEIGHT - TOP - BOTTOM
    parts = []
    for fraction, label in y_ticks:
        y = TOP + plot * (1 - fraction)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d0d0d0"/>'
                     f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#1a1a1a">{escape(label)}</text>')
    return parts


def shares_chart(series: Sequence[dict], decisions: Sequence[str], chart_id: str = "shares") -> str:
    """Stacked 100% bars, one per time bucket: each decision's share of that bucket's messages.

    ``series``: ``[{"label": "10:00", "start": ISO, "total": n, "counts": {decision: n}}]``, oldest first.
    An empty bucket is drawn as a thin grey line at the bottom (no messages, not 0%).
    """
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(series), 1)
    bar = max(slot * 0.8, 1.0)
    body = _frame([(0, "0%"), (0.5, "50%"), (1, "100%")])
    body += _legend([(COLOURS[d], LABELS[d]) for d in decisions])
    xs = []
    for i, bucket in enumerate(series):
        x = LEFT + i * slot + (slot - bar) / 2
        xs.append(x + bar / 2)
        total = bucket["total"]
        if not total:
            body.append(f'<rect x="{x:.1f}" y="{TOP + plot_h - 1}" width="{bar:.1f}" height="1" fill="#9a9a9a">'
                        f'<title>{escape(bucket["label"])}: no messages</title></rect>')
            continue
        y = TOP + plot_h
        for decision in decisions:
            count = bucket["counts"].get(decision, 0)
            if not count:
                continue
            height = plot_h * count / total
            y -= height
            body.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{height:.1f}" '
                        f'fill="{COLOURS[decision]}" stroke="#ffffff" stroke-width="0.5"><title>'
                        f'{escape(bucket["label"])}: {count} of {total} {LABELS[decision]} ({count / total:.0%})'
                        f'</title></rect>')
    body += _x_labels([bucket["label"] for bucket in series], xs)
    busiest = max((bucket["total"] for bucket in series), default=0)
    described = (f"{len(series)} time buckets; the busiest had {busiest} messages" if busiest
                 else "no decisions in this period")
    return _svg("Share of each decision over time", described, body, chart_id)


def latency_chart(points: Sequence[dict], chart_id: str = "latency") -> str:
    """p50 and p95 of the action latency (ms) per sampling interval, as two lines with dots."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    values = [p[key] for p in points for key in LINES if p.get(key) is not None]
    top = max(values, default=0.0)
    top = max(10.0, top * 1.1)
    body = _frame([(0, "0"), (0.5, f"{top / 2:.0f} ms"), (1, f"{top:.0f} ms")])
    body += _legend([colour_label for colour_label in LINES.values()])
    step = plot_w / max(len(points) - 1, 1)
    xs = [LEFT + i * step if len(points) > 1 else LEFT + plot_w / 2 for i in range(len(points))]
    for key, (colour, name) in LINES.items():
        dots = [(x, TOP + plot_h * (1 - p[key] / top), p) for x, p in zip(xs, points, strict=True)
                if p.get(key) is not None]
        if len(dots) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in dots)
            body.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y, p in dots:
            body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"><title>{escape(p["label"])}: '
                        f'{name} {p[key]} ms over {p["calls"]} action calls</title></circle>')
    body += _x_labels([p["label"] for p in points], xs)
    described = (f"{len(points)} intervals; the highest p95 was {max(values):.0f} ms" if values
                 else "no action calls sampled yet")
    return _svg("Action latency over time (p50 and p95)", described, body, chart_id)
