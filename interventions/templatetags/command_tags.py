"""Display helpers for commands: a state as glyph and word, a step's time after the request."""

from __future__ import annotations

from django import template

register = template.Library()

STATE_GLYPHS = {
    "queued": "◷",
    "dispatched": "➜",
    "delivered": "✉",
    "applied": "✓",
    "rejected": "✗",
    "failed": "⚠",
    "expired": "⌛",
}


@register.inclusion_tag("interventions/command_state.html")
def command_state(state: str):
    """A command's state as glyph and word, so it reads without colour too."""
    return {"state": state, "glyph": STATE_GLYPHS.get(state, "?")}


@register.inclusion_tag("interventions/step_time.html")
def step_time(moment, requested):
    """When a step happened, as the time since the request (the exact time on hover)."""
    offset = (moment - requested).total_seconds() if moment else None
    return {"moment": moment, "offset": max(offset, 0.0) if offset is not None else None}
