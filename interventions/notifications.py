"""Telling people: approvers about new and soon-due requests, operators about commands that
failed or expired. By e-mail (Django's mail settings) and by an outgoing chat webhook
(NOTIFY_WEBHOOK_URL: a JSON body with a `text` field, as Slack-style incoming webhooks take,
signed like command webhooks when NOTIFY_WEBHOOK_SECRET is set).
"""

from __future__ import annotations

import logging
import time

import orjson
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db.models import Q

from access.roles import Capability, roles_with
from interventions import outbound, signing
from interventions.models import ApprovalRequest, Command

log = logging.getLogger(__name__)


def send(kind: str, object_id: str) -> None:
    message = _compose(kind, object_id)
    if message is None:
        return
    subject, text, recipients = message
    if recipients:
        send_mail(subject, text, None, recipients, fail_silently=False)
    _chat(f"{subject}\n{text}", kind, object_id)


def _compose(kind: str, object_id: str) -> tuple[str, str, list[str]] | None:
    base = settings.FLIGHTDECK_BASE_URL.rstrip("/")
    if kind in ("approval_requested", "approval_due_soon"):
        request = ApprovalRequest.objects.select_related("run", "run__agent").filter(
            pk=object_id, state="pending"
        ).first()
        if request is None:
            return None  # decided or expired meanwhile: nothing to ask for
        when = "waits for your decision" if kind == "approval_requested" else "is due soon"
        subject = f"[Flightdeck] Approval {when}: {request.action} by {request.run.agent}"
        text = (
            f"{request.run.agent} asks to run {request.action} in {request.run.workflow_id}.\n"
            f"Risk: {request.risk}; approvals needed: {request.required_approvals}; "
            f"deadline: {request.deadline.isoformat()}.\n"
            f"Decide at {base}/approvals/"
        )
        return subject, text, _approver_addresses(request)
    if kind in ("command_failed", "command_expired"):
        command = Command.objects.select_related("run", "requested_by").filter(pk=object_id).first()
        if command is None:
            return None
        subject = (
            f"[Flightdeck] Command {command.state}: {command.label} on "
            f"{command.run.workflow_id}"
        )
        text = (
            f"Your {command.label} command for {command.run.workflow_id} is {command.state}: "
            f"{command.last_error or 'no detail'}.\n{base}/runs/{command.run.uuid}/"
        )
        user = command.requested_by
        return subject, text, [user.email] if user is not None and user.email else []
    log.warning("unknown notification kind %r", kind)
    return None


def _approver_addresses(request: ApprovalRequest) -> list[str]:
    users = get_user_model().objects.filter(is_active=True).filter(
        Q(memberships__namespace_id=request.run.namespace_id,
          memberships__role__in=roles_with(Capability.APPROVE))
    ).exclude(email="").distinct()
    exclude = request.on_behalf_of
    return sorted({u.email for u in users if exclude not in (u.get_username(), u.email)})


def _chat(text: str, kind: str, object_id: str) -> None:
    url = settings.NOTIFY_WEBHOOK_URL
    if not url:
        return
    body = orjson.dumps({"text": text, "kind": kind, "id": object_id})
    headers = {"content-type": "application/json"}
    if settings.NOTIFY_WEBHOOK_SECRET:
        headers = signing.headers(
            settings.NOTIFY_WEBHOOK_SECRET, f"{kind}-{object_id}", int(time.time()), body
        )
    response = outbound.post(url, body, headers, timeout=settings.WEBHOOK_TIMEOUT_SECONDS)
    if response.status >= 500:
        raise OSError(f"chat webhook answered HTTP {response.status}")  # retried by the task
    if response.status >= 300:
        log.warning("chat webhook answered HTTP %s for %s %s", response.status, kind, object_id)
