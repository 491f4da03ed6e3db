"""Server-drawn SVG bar charts: no script, readable at any width."""
from __future__ import annotations

from markupsafe import Markup, escape

COLOURS = ("#2563eb", "#16a34a", "#dc2626", "#d97706", "#7c3aed", "#0891b2")


def bar_chart(items: list[tuple[str, float]], *, title: str = "") -> Markup:
    """Horizontal bars, one row per (label, value); the number is printed at the end of each bar."""
    if not items:
        return Markup("")
    row, label_w, width = 28, 120, 480
    top = max((value for _label, value in items), default=0) or 1
    height = row * len(items) + 8
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
             f'preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg">']
    span = width - label_w - 50
    for n, (label, value) in enumerate(items):
        y = 4 + n * row
        bar = max(2.0, span * (value / top)) if value else 0
        colour = COLOURS[n % len(COLOURS)]
        parts.append(f'<text x="{label_w - 6}" y="{y + 17}" text-anchor="end" font-size="13">{escape(label)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 4}" width="{bar:.1f}" height="18" rx="3" fill="{colour}"/>')
        number = f"{value:g}" if isinstance(value, float) else str(value)
        parts.append(f'<text x="{label_w + bar + 6:.1f}" y="{y + 17}" font-size="13">{escape(number)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
