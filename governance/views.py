"""The governance pages of a namespace: findings (with counts per day and a CSV export) for
every member, retention and legal holds (the period set by admins, holds placed and released
by admins and investigators).

Access: `get_namespace_for` answers 404 for a namespace the user is not a member of and 403
for a member without the capability an action needs; every query below is scoped to that
namespace.
"""

from __future__ import annotations

import uuid as uuid_module
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from access.models import Namespace
from access.permissions import has_capability
from access.roles import Capability
from access.views import get_namespace_for
from governance import retention as retention_rules
from governance.chart import chart
from governance.csv_export import rows_as_csv
from governance.findings import NamespaceFindings, for_namespace
from governance.models import Finding, LegalHold
from governance.vocabulary import RUN_RULES, Outcome
from history.models import Run

PAGE = "governance/governance.html"
RETENTION_PAGE = "governance/retention.html"
PAGE_SIZE = 50
WINDOWS = [(7, "7 days"), (30, "30 days"), (90, "90 days"), (365, "a year")]
DEFAULT_DAYS = 30


class FindingsFilter(forms.Form):
    days = forms.TypedChoiceField(choices=WINDOWS, coerce=int, label="Received in the last")
    rule = forms.ChoiceField(choices=[("", "every rule")] + [(r.value, r.label) for r in RUN_RULES],
                             required=False)
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)


@login_required
@require_GET
def governance_index(request: HttpRequest) -> HttpResponse:
    """The namespaces whose governance page the user may open."""
    namespaces = list(Namespace.objects.visible_to(request.user))
    return render(request, "governance/index.html", {"namespaces": namespaces})


@login_required
@require_GET
def governance(request: HttpRequest, slug: str) -> HttpResponse:
    namespace = get_namespace_for(request.user, slug)
    form = FindingsFilter(_with_defaults(request.GET))
    cursor = None
    if form.is_valid() and form.cleaned_data["before"]:
        cursor = Finding.objects.filter(namespace=namespace, pk=form.cleaned_data["before"]).first()
        if cursor is None:
            form.add_error("before", "no such finding in this namespace")
    if form.errors:
        context = {"namespace": namespace, "form": form, "report": None}
        return render(request, _template(request), context, status=400)
    report = for_namespace(namespace, days=form.cleaned_data["days"], refresh=False)
    findings = report.findings(form.cleaned_data["rule"])
    if cursor is not None:
        findings = findings.before(cursor)
    page = list(findings[: PAGE_SIZE + 1])
    return render(request, _template(request), {
        **_report_context(namespace, form, report),
        "page": page[:PAGE_SIZE],
        "older": page[PAGE_SIZE - 1].pk if len(page) > PAGE_SIZE else None,
    })


def _with_defaults(query):
    """The query with the default window filled in, so that the form shows what is shown."""
    data = query.copy()
    if not data.get("days"):
        data["days"] = str(DEFAULT_DAYS)
    return data


def _template(request: HttpRequest) -> str:
    """The whole page, or one of its regions for htmx (the filters swap the report; the
    "older" link swaps the findings list)."""
    if request.htmx and request.htmx.target in ("governance-report", "governance-findings"):
        return f"{PAGE}#{request.htmx.target.removeprefix('governance-')}"
    return PAGE


def _report_context(namespace: Namespace, form: FindingsFilter,
                    report: NamespaceFindings) -> dict:
    query = {key: value for key, value in form.cleaned_data.items() if value and key != "before"}
    return {
        "namespace": namespace,
        "form": form,
        "report": report,
        "chart": chart(report.days),
        "rules": [(rule, report.counts.get(rule, 0)) for rule in RUN_RULES],
        "outcomes": list(Outcome),
        "query": urlencode(query),
        "keep_days": retention_rules.keep_days_of(namespace),
    }


@login_required
@require_GET
def findings_csv(request: HttpRequest, slug: str) -> HttpResponse:
    """The page's findings (same filters, every page of them) as CSV, agents' first."""
    namespace = get_namespace_for(request.user, slug)
    form = FindingsFilter(_with_defaults(request.GET))
    if not form.is_valid():
        return HttpResponse("; ".join(f"{field}: {' '.join(errors)}"
                                      for field, errors in form.errors.items()),
                            status=400, content_type="text/plain; charset=utf-8")
    report = for_namespace(namespace, days=form.cleaned_data["days"], refresh=False)
    response = StreamingHttpResponse(
        rows_as_csv(_csv_rows(request, report, form.cleaned_data["rule"])),
        content_type="text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = (
        f'attachment; filename="governance-{namespace.slug}.csv"'
    )
    return response


def _csv_rows(request: HttpRequest, report: NamespaceFindings, rule: str):
    if not rule:
        for finding in report.agent_findings:
            yield ["", finding.rule, finding.agent.name, "", "", "", "", finding.agent.name,
                   f"{finding.title}; {finding.recent_runs} runs in the window", ""]
    for finding in report.findings(rule).iterator(chunk_size=1000):
        link = request.build_absolute_uri(
            f"{reverse('run', args=[finding.run.uuid])}?event={finding.event_id}"
            f"#event-{finding.event_id}"
        )
        yield [finding.received_at.isoformat(), finding.rule, finding.agent.name,
               finding.run.workflow_id, finding.run.run_id, finding.run.uuid, finding.event_id,
               finding.subject, finding.summary, link]


# --- retention and legal holds ------------------------------------------------------------------


class RetentionForm(forms.Form):
    keep_days = forms.IntegerField(
        required=False, min_value=1, max_value=36500, label="Keep closed runs for (days)",
        help_text="Empty: keep them for ever.",
    )


class HoldForm(forms.Form):
    run = forms.CharField(required=False, max_length=36, label="Run UUID",
                          help_text="Empty: hold every run of the namespace.")
    reason = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args, namespace: Namespace, **kwargs):
        super().__init__(*args, **kwargs)
        self.namespace = namespace

    def clean_run(self) -> Run | None:
        value = self.cleaned_data["run"].strip()
        if not value:
            return None
        try:
            key = uuid_module.UUID(value)
        except ValueError:
            raise forms.ValidationError("must be a run UUID") from None
        run = Run.objects.filter(namespace=self.namespace, uuid=key).first()
        if run is None:
            raise forms.ValidationError("no such run in this namespace")
        return run


class ReleaseForm(forms.Form):
    reason = forms.CharField(max_length=2000)


@login_required
@require_http_methods(["GET", "POST"])
def retention(request: HttpRequest, slug: str) -> HttpResponse:
    """Every member sees the period and the holds; admins set the period here."""
    namespace = get_namespace_for(request.user, slug)
    form = RetentionForm(request.POST or None,
                         initial={"keep_days": retention_rules.keep_days_of(namespace)})
    if request.method == "POST":
        if not has_capability(request.user, namespace.pk, Capability.ADMINISTER):
            raise PermissionDenied("Only the namespace's admins set its retention.")
        if form.is_valid():
            changed = retention_rules.set_retention(
                namespace, form.cleaned_data["keep_days"], actor=request.user, request=request
            )
            return _retention_done(request, namespace, "Retention saved." if changed
                                   else "Retention unchanged.")
    return _retention_response(request, namespace, period_form=form,
                               status=400 if form.errors else 200)


@login_required
@require_POST
def place_hold(request: HttpRequest, slug: str) -> HttpResponse:
    namespace = get_namespace_for(request.user, slug, need=Capability.INVESTIGATE)
    form = HoldForm(request.POST, namespace=namespace)
    if form.is_valid():
        try:
            retention_rules.place_hold(namespace, run=form.cleaned_data["run"],
                                       reason=form.cleaned_data["reason"], actor=request.user,
                                       request=request)
        except retention_rules.HoldRefused as refusal:
            form.add_error(refusal.field if refusal.field in form.fields else None,
                           refusal.message)
        else:
            return _retention_done(request, namespace, "Hold placed.")
    return _retention_response(request, namespace, hold_form=form, status=400)


@login_required
@require_POST
def release_hold(request: HttpRequest, slug: str, hold_id: int) -> HttpResponse:
    namespace = get_namespace_for(request.user, slug, need=Capability.INVESTIGATE)
    hold = get_object_or_404(LegalHold, pk=hold_id, namespace=namespace)
    form = ReleaseForm(request.POST)
    if form.is_valid():
        try:
            retention_rules.release_hold(hold, reason=form.cleaned_data["reason"],
                                         actor=request.user, request=request)
        except retention_rules.HoldRefused as refusal:
            return _retention_response(request, namespace, error=refusal.message, status=409)
        return _retention_done(request, namespace, "Hold released.")
    return _retention_response(request, namespace, release_errors={hold.pk: form.errors},
                               status=400)


def _retention_done(request: HttpRequest, namespace: Namespace, notice: str) -> HttpResponse:
    """After a change: the page's region again (htmx), or back to the page (PRG)."""
    if request.htmx:
        return _retention_response(request, namespace, notice=notice)
    messages.success(request, notice)
    return redirect("namespace-retention", slug=namespace.slug)


def _retention_response(request: HttpRequest, namespace: Namespace, *, period_form=None,
                        hold_form=None, release_errors=None, notice: str = "",
                        error: str = "", status: int = 200) -> HttpResponse:
    keep_days = retention_rules.keep_days_of(namespace)
    holds = list(LegalHold.objects.filter(namespace=namespace).select_related("run")[:100])
    context = {
        "namespace": namespace,
        "keep_days": keep_days,
        "period_form": period_form or RetentionForm(initial={"keep_days": keep_days}),
        "hold_form": hold_form or HoldForm(namespace=namespace),
        "holds": [hold for hold in holds if hold.is_active],
        "released": [hold for hold in holds if not hold.is_active][:20],
        "release_errors": release_errors or {},
        "may_set": has_capability(request.user, namespace.pk, Capability.ADMINISTER),
        "may_hold": has_capability(request.user, namespace.pk, Capability.INVESTIGATE),
        "notice": notice,
        "error": error,
    }
    template = f"{RETENTION_PAGE}#retention" if request.htmx else RETENTION_PAGE
    return render(request, template, context, status=status)

