"""Small display helpers for runs and events."""

from __future__ import annotations

import orjson
from django import template

register = template.Library()

STATUS_GLYPHS = {
    "running": "●",
    "paused": "❚❚",
    "completed": "✓",
    "failed": "✗",
    "cancelled": "⊘",
    "terminated": "■",
    "timed_out": "⌛",
    "continued_as_new": "↻",
}


@register.inclusion_tag("history/status.html")
def status_badge(status: str):
    """A status as glyph and words, so it reads without colour too."""
    return {"status": status, "glyph": STATUS_GLYPHS.get(status, "?"),
            "label": status.replace("_", " ")}


@register.filter
def seconds(value) -> str:
    """A duration in seconds, readable: 850ms, 12.4s, 3m 05s, 2h 07m."""
    if value is None:
        return "—"
    value = float(value)
    if value < 1:
        return f"{value * 1000:.0f}ms"
    if value < 60:
        return f"{value:.1f}s"
    minutes, secs = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


@register.filter
def short_json(value, limit: int = 120) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"
