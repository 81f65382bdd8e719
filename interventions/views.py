"""The run page's interventions: the operators' controls, and the run's commands and pending
approval requests, as one region (`#commands`) that the dashboard's run page includes. Without
JavaScript the same URL is a page of its own.

Every command goes through `interventions.commands.request_command`: these views read the
form, ask for confirmation of a destructive verb, and show what happened.
"""

from __future__ import annotations

import hashlib
import uuid

import orjson
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods
from django_htmx.http import trigger_client_event

from access.roles import Capability
from history.access import get_run_for
from history.models import Run
from history.views import run_header
from interventions.commands import CommandRefused, NotAllowed, allowed_kinds, request_command
from interventions.models import ApprovalRequest, Command
from interventions.vocabulary import (
    DESTRUCTIVE_KINDS,
    OPEN_STATES,
    OPERATOR_KINDS,
    REASON_REQUIRED,
    CommandKind,
    Decision,
)

PARTS = "interventions/commands.html"
PAGE = "interventions/commands_page.html"
LIST_SIZE = 50  # the latest commands shown; the API lists them all

# What each verb does, in the words of docs/event-schema.md: the buttons' titles and the
# confirmation step say it.
HINTS = {
    CommandKind.PAUSE: "hold the run at its next checkpoint",
    CommandKind.RESUME: "let the paused run go on",
    CommandKind.CANCEL: "ask the run to stop at its next checkpoint",
    CommandKind.TERMINATE: "stop the run at once, without waiting for a checkpoint",
    CommandKind.SIGNAL: "deliver a named signal with a JSON payload",
}
WARNINGS = {
    CommandKind.CANCEL: "The agent is asked to stop at its next checkpoint; a cancelled run "
    "cannot be resumed.",
    CommandKind.TERMINATE: "The run is stopped at once, without waiting for a checkpoint; a "
    "terminated run cannot be resumed.",
}


class CommandForm(forms.Form):
    """One form, one submit button per verb (`kind`). The checks that matter (roles, the
    run's state, reasons, payload size) are `request_command`'s; this only parses the fields.
    The signal's name and payload belong to its button: other verbs ignore what they hold."""

    kind = forms.ChoiceField(
        choices=[(kind, CommandKind(kind).label) for kind in OPERATOR_KINDS],
        error_messages={"required": "press the button of the command to send"},
    )
    reason = forms.CharField(required=False)
    signal_name = forms.CharField(required=False)
    payload = forms.CharField(required=False)  # JSON text, parsed below
    command_id = forms.UUIDField(required=False)
    confirmed = forms.BooleanField(required=False)

    def _is_signal(self) -> bool:
        return self.cleaned_data.get("kind") == CommandKind.SIGNAL

    def clean_signal_name(self):
        name = self.cleaned_data["signal_name"] if self._is_signal() else ""
        limit = Command._meta.get_field("signal_name").max_length
        if len(name) > limit:
            raise forms.ValidationError(f"must be at most {limit} characters")
        return name

    def clean_payload(self):
        text = self.cleaned_data["payload"]
        if not text or not self._is_signal():
            return None
        try:
            # orjson: a nesting limit, so a deep payload is a 400, never a RecursionError.
            payload = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise forms.ValidationError(f"is not valid JSON ({exc})") from None
        # PostgreSQL cannot store U+0000 in jsonb: refused here rather than failing the insert.
        if _holds_nul(payload):
            raise forms.ValidationError("must not contain the character U+0000")
        return payload


def _holds_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


# --- context builders, shared with the dashboard's run page --------------------------------


def commands_region(request: HttpRequest, run: Run) -> dict:
    """Context for the whole `#commands` region: the controls and the list."""
    return {**controls_context(request, run), **list_context(run)}


def controls_context(
    request: HttpRequest, run: Run, form: CommandForm | None = None, *, confirming: bool = False
) -> dict:
    """The form (a fresh one unless `form` is given back with its errors) and the verbs the
    run's state and the user's roles allow now."""
    allowed = allowed_kinds(run, request.user)
    values = {}
    if form is not None:
        values = {name: form.data.get(name, "") for name in ("reason", "signal_name", "payload")}
    kind = form.cleaned_data["kind"] if confirming else ""
    return {
        "run": run,
        "form": form or CommandForm(),
        "values": values,
        "command_id": _command_id(form),
        "verbs": [
            {"kind": k, "label": CommandKind(k).label, "hint": HINTS[k],
             "destructive": k in DESTRUCTIVE_KINDS}
            for k in allowed if k != CommandKind.SIGNAL
        ],
        "signal_allowed": CommandKind.SIGNAL in allowed,
        "may_send": bool(allowed),
        "confirm": {"kind": kind, "label": CommandKind(kind).label, "warning": WARNINGS[kind]}
        if confirming else None,
    }


def _command_id(form: CommandForm | None) -> str:
    """The idempotency key the form carries: the submitted one through errors and the
    confirmation step (a repeated click stays one command), a fresh one otherwise."""
    submitted = getattr(form, "cleaned_data", {}).get("command_id")
    return str(submitted or uuid.uuid4())


def list_context(run: Run) -> dict:
    """The latest commands, newest first, and the pending approval requests, soonest first."""
    commands = list(
        Command.objects.for_run(run).select_related("requested_by")
        .order_by("-created_at")[: LIST_SIZE + 1]
    )
    pending = list(
        ApprovalRequest.objects.pending().filter(run=run)
        .annotate(
            approvals_given=Count("decisions", filter=Q(decisions__decision=Decision.APPROVE))
        )
        .order_by("deadline")[:LIST_SIZE]
    )
    return {
        "run": run,
        "commands": commands[:LIST_SIZE],
        "more_commands": len(commands) > LIST_SIZE,
        "pending_approvals": pending,
        "commands_open": any(command.state in OPEN_STATES for command in commands),
        "list_version": _version(commands, pending),
    }


def _version(commands: list[Command], pending: list[ApprovalRequest]) -> str:
    """A fingerprint of what the list shows: a poll that finds it unchanged swaps nothing."""
    shown = [(c.pk, c.state, c.attempts, c.last_error) for c in commands]
    shown += [(a.pk, a.approvals_given, a.is_overdue) for a in pending]
    return hashlib.sha256(repr(shown).encode()).hexdigest()[:16]


# --- views -----------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def run_commands(request: HttpRequest, run_uuid) -> HttpResponse:
    """GET: the run's commands (for htmx the polled list, or the controls); a page of its own
    without htmx. POST: send a command from the form."""
    if request.method == "POST":
        return _send(request, run_uuid)
    run = get_run_for(request.user, run_uuid)
    if request.htmx and request.htmx.target == "command-controls":
        return render(request, f"{PARTS}#controls", controls_context(request, run))
    if request.htmx:
        return _poll(request, run)
    return render(request, PAGE, {**run_header(run), **commands_region(request, run)})


def _poll(request: HttpRequest, run: Run) -> HttpResponse:
    """The list while commands are open: 204 when nothing changed since `version`; once every
    command is final, 286 (htmx stops polling) and `commands-settled`, on which the controls
    reload (the outcome may have changed which verbs apply)."""
    context = list_context(run)
    if not context["commands_open"]:
        response = render(request, f"{PARTS}#list", context, status=286)
        return trigger_client_event(response, "commands-settled")
    if request.GET.get("version") == context["list_version"]:
        return HttpResponse(status=204)
    return render(request, f"{PARTS}#list", context)


def _send(request: HttpRequest, run_uuid) -> HttpResponse:
    run = get_run_for(request.user, run_uuid, need=Capability.OPERATE)
    form = CommandForm(request.POST)
    if not form.is_valid():
        return _form_response(request, run, form, status=400)
    data = form.cleaned_data
    if _must_confirm(request, run, data):
        return _form_response(request, run, form, confirming=True)
    try:
        command, created = request_command(
            run, request.user, data["kind"], reason=data["reason"], payload=data["payload"],
            signal_name=data["signal_name"], command_id=data["command_id"], request=request,
        )
    except NotAllowed as exc:
        raise PermissionDenied(str(exc)) from None
    except CommandRefused as exc:
        form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        return _form_response(request, run, form, status=409 if exc.field == "kind" else 400)
    notice = f"{command.label.capitalize()} requested: {command.get_state_display().lower()}."
    if not request.htmx:
        messages.success(request, notice)
        return redirect(f"{reverse('run', args=[run.uuid])}#commands")
    context = {**commands_region(request, run), "notice": notice}
    return render(request, f"{PARTS}#sent", context, status=201 if created else 200)


def _must_confirm(request: HttpRequest, run: Run, data: dict) -> bool:
    """A destructive verb is sent only once confirmed. A request that would be refused anyway
    (the verb not possible now, no reason given) is not asked about: `request_command` refuses
    it at once, in its own words."""
    kind = data["kind"]
    if kind not in DESTRUCTIVE_KINDS or data["confirmed"]:
        return False
    if kind in REASON_REQUIRED and not data["reason"]:
        return False
    return kind in allowed_kinds(run, request.user)


def _form_response(
    request: HttpRequest, run: Run, form: CommandForm, *, status: int = 200,
    confirming: bool = False,
) -> HttpResponse:
    """The form again, with its errors next to the fields or as the confirmation step."""
    context = controls_context(request, run, form, confirming=confirming)
    if request.htmx:
        return render(request, f"{PARTS}#controls", context, status=status)
    page = {**run_header(run), **list_context(run), **context}
    return render(request, PAGE, page, status=status)
