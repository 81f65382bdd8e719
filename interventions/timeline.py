"""Flightdeck's own records as marks on a run's timeline: each command's request, delivery and
outcome, and each approval request's opening and its decision or deadline.

The dashboard's run page passes these to `history.views.run_waterfall`, which draws marks
without knowing what they are. A mark is a dict: `time`, `label` (its tooltip, plain text that
the template escapes), `kind` (CSS classes), `shape` (`diamond` for a request, else a line)
and `href` (where a click leads).
"""

from __future__ import annotations

from datetime import datetime

from django.template.defaultfilters import truncatechars
from django.utils import timezone

from history.models import Run
from interventions.models import ApprovalRequest, Command
from interventions.vocabulary import ApprovalState

MARK_LIMIT = 200  # per kind of record: beyond that a page's timeline would be all marks


def marks_between(run: Run, start: datetime, end: datetime) -> list[dict]:
    """Marks of the records requested between `start` and `end` (the time the history page
    shown covers), each mark itself inside that span."""
    commands = (
        Command.objects.filter(run=run, created_at__range=(start, end))
        .select_related("requested_by").order_by("created_at")[:MARK_LIMIT]
    )
    approvals = ApprovalRequest.objects.filter(
        run=run, created_at__range=(start, end)
    ).order_by("created_at")[:MARK_LIMIT]
    marks = [mark for command in commands for mark in command_marks(command)]
    marks += [mark for approval in approvals for mark in approval_marks(approval)]
    return [mark for mark in marks if start <= mark["time"] <= end]


def command_marks(command: Command) -> list[dict]:
    """The request (its tooltip tells the whole story), and its delivery and outcome once they
    happened."""
    who = command.requested_by.get_username() if command.requested_by else "Flightdeck"
    href = f"#command-{command.pk}"
    story = [f"{command.label} requested by {who} — {command.state}"]
    if command.delivered_at:
        story.append(f"delivered {_clock(command.delivered_at)}")
    if command.finished_at:
        story.append(f"{command.state} {_clock(command.finished_at)}")
    for name, text in (("reason", command.reason), ("agent", command.ack_detail),
                       ("error", command.last_error)):
        if text:
            story.append(f"{name}: {truncatechars(text, 200)}")
    marks = [{"time": command.created_at, "label": " · ".join(story), "href": href,
              "kind": "mark-command mark-requested", "shape": "diamond"}]
    if command.delivered_at:
        marks.append({"time": command.delivered_at, "href": href,
                      "label": f"{command.label} delivered to the agent",
                      "kind": "mark-command mark-delivered", "shape": "line"})
    if command.finished_at:
        marks.append({"time": command.finished_at, "href": href,
                      "label": f"{command.label} {command.state}",
                      "kind": f"mark-command mark-{command.state}", "shape": "line"})
    return marks


def approval_marks(approval: ApprovalRequest) -> list[dict]:
    """The request, and its decision or expiry; a pending one's deadline (dropped while it is
    still ahead: the timeline ends now)."""
    href = f"?event={approval.event_id}#event-{approval.event_id}"
    label = f"approval of {approval.action} ({approval.risk} risk)"
    marks = [{"time": approval.created_at, "href": href, "shape": "diamond",
              "kind": "mark-approval mark-requested",
              "label": f"{label} requested — {approval.state}, "
                       f"deadline {_clock(approval.deadline)}"}]
    if approval.decided_at:
        marks.append({"time": approval.decided_at, "href": href, "shape": "line",
                      "kind": f"mark-approval mark-{approval.state}",
                      "label": f"{label} {approval.state}"})
    elif approval.state == ApprovalState.PENDING:
        marks.append({"time": approval.deadline, "href": href, "shape": "line",
                      "kind": "mark-approval mark-deadline",
                      "label": f"{label}: deadline passed, still pending"})
    return marks


def _clock(moment: datetime) -> str:
    return timezone.localtime(moment).strftime("%H:%M:%S")
