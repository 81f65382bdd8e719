"""Small display helpers for runs and events."""

from __future__ import annotations

from datetime import datetime

import orjson
from django import template
from django.utils import timezone
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe

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


@register.simple_tag
def status_badge(status: str) -> str:
    """A status as glyph and words, so it reads without colour too. Formatted here rather
    than by an inclusion template: the run list shows one per row and per count. The
    markup is the template's, to the newline it ended with."""
    return format_html(
        '<span class="status status-{}"><span aria-hidden="true">{}</span> {}</span>\n',
        status, STATUS_GLYPHS.get(status, "?"), status.replace("_", " "),
    )


@register.simple_tag
def time_element(moment: datetime | None, precision: str = "seconds", title: str = "") -> str:
    """`<time>` of an aware datetime in the current time zone, showing the date and time to
    the second or, with precision "ms", the time of day to the millisecond (with an optional
    title). What `|date:'c'` and `|date:"Y-m-d H:i:s"` (or `"H:i:s.u"|slice:":12"`) render,
    without parsing a format on every call: rows of a page show hundreds of times."""
    if moment is None:
        return ""
    moment = timezone.template_localtime(moment)
    if precision == "ms":
        shown = (f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
                 f".{moment.microsecond // 1000:03d}")
    else:
        shown = (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d} "
                 f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}")
    # Digits and punctuation only, but for the title.
    title = f' title="{escape(title)}"' if title else ""
    return mark_safe(f'<time datetime="{moment.isoformat()}"{title}>{shown}</time>')  # noqa: S308


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
