"""Evidence pages: the signing key to pin and recent digests, the export form, an export's
progress and download, the public key, and the run list as CSV.

Exporting needs the investigate capability (evidence.scope); an export is seen and downloaded
only by the person who asked for it (or a superuser), and every download is audited.
"""

from __future__ import annotations

import uuid as uuid_module

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    QueryDict,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from access.models import Namespace
from access.permissions import has_capability
from access.roles import Capability
from evidence import exports, keys
from evidence.models import EvidenceExport, SignedDigest
from evidence.scope import ExportScope, ScopeError
from evidence.spreadsheet import csv_rows
from history.models import Run
from history.run_filters import FilterError, RunFilter

PLAIN = "text/plain; charset=utf-8"
REASON_MAX = 2000
HTMX_STOP_POLLING = 286


def get_export_for(user, export_id) -> EvidenceExport:
    """The export if `user` may see it, else 404 (another person's export is never confirmed).
    """
    try:
        key = uuid_module.UUID(str(export_id))
    except ValueError:
        raise Http404("No such export.") from None
    export = EvidenceExport.objects.visible_to(user).filter(pk=key).first()
    if export is None:
        raise Http404("No such export.")
    return export


@login_required
@require_GET
def evidence_home(request: HttpRequest) -> HttpResponse:
    investigable = list(Namespace.objects.visible_to(request.user, Capability.INVESTIGATE))
    try:
        fingerprint, public_pem = keys.fingerprint(), keys.public_key_pem().decode()
    except ImproperlyConfigured:  # no key, or one that does not parse (evidence.E001 says so)
        fingerprint, public_pem = "", ""
    context = {
        "fingerprint": fingerprint,
        "public_key_pem": public_pem,
        "exports": EvidenceExport.objects.visible_to(request.user)[:50],
        "digests": SignedDigest.objects.all()[:10] if investigable else [],
        "namespaces": investigable,
    }
    return render(request, "evidence/home.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def export_form(request: HttpRequest) -> HttpResponse:
    """GET: what the scope covers and the form to confirm; POST: start the export."""
    data = request.POST if request.method == "POST" else request.GET
    form_errors = {}
    try:
        scope = ExportScope.from_query(data)
        if request.method == "POST":
            raw, reason, form_errors = _payload_choice(request.POST)
            if not form_errors:  # request_export resolves the scope itself: once, not twice
                export = exports.request_export(request.user, scope, raw=raw, reason=reason,
                                                request=request)
                return redirect("evidence-export", export.id, permanent=False)
        run_uuids, events, _ = scope.resolve(request.user)
    except ScopeError as exc:
        return render(request, "evidence/export_form.html",
                      {"errors": exc.errors, "namespaces": _investigable(request.user)},
                      status=400)
    context = {"scope": scope, "runs": len(run_uuids), "events": events, "errors": form_errors,
               "filter_query": scope.params.get("query", ""), "post": request.POST}
    return render(request, "evidence/export_form.html", context,
                  status=400 if form_errors else 200)


def _payload_choice(data: QueryDict) -> tuple[bool, str, dict]:
    payloads = data.get("payloads", "redacted")
    reason = data.get("reason", "").replace("\x00", "").strip()
    errors = {}
    if payloads not in ("redacted", "raw"):
        errors["payloads"] = "must be redacted or raw"
    if payloads == "raw" and not reason:
        errors["reason"] = "say why the raw payloads are needed (it is kept in the audit log)"
    if len(reason) > REASON_MAX:
        errors["reason"] = f"must be at most {REASON_MAX} characters"
    return payloads == "raw", reason, errors


def _investigable(user) -> list[Namespace]:
    return list(Namespace.objects.visible_to(user, Capability.INVESTIGATE))


@login_required
@require_GET
def export_status(request: HttpRequest, export_id) -> HttpResponse:
    """The export's progress; htmx polls the #export-status region until it is finished."""
    export = get_export_for(request.user, export_id)
    context = {"export": export, "scope": ExportScope(export.kind, export.scope).describe()}
    if request.htmx and request.htmx.target == "export-status":
        status = HTMX_STOP_POLLING if export.is_finished else 200
        return render(request, "evidence/export.html#status", context, status=status)
    return render(request, "evidence/export.html", context)


@login_required
@require_GET
def export_download(request: HttpRequest, export_id) -> FileResponse:
    export = get_export_for(request.user, export_id)
    if export.state != "ready":
        raise Http404("This export has no bundle to download (not ready, failed or expired).")
    # Roles may have changed since the export was asked for: the evidence goes only to someone
    # who may still investigate every namespace it covers.
    for namespace in export.namespaces.all():
        if not has_capability(request.user, namespace.pk, Capability.INVESTIGATE):
            raise PermissionDenied(f"Downloading needs the investigate capability in "
                                   f"{namespace.slug}.")
    try:
        handle = open(exports.file_path(export), "rb")  # noqa: SIM115 - FileResponse closes it
    except FileNotFoundError:
        raise Http404("The bundle's file is gone (expired or cleaned up).") from None
    exports.record_download(export, request.user, request)
    return FileResponse(handle, as_attachment=True, filename=export.download_name,
                        content_type="application/zip")


@login_required
@require_GET
def public_key(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(keys.public_key_pem(), content_type="application/x-pem-file")
    response["Content-Disposition"] = 'attachment; filename="flightdeck-evidence-key.pem"'
    return response


CSV_HEADER = ["uuid", "namespace", "agent", "workflow_id", "run_id", "workflow_type", "status",
              "started_at", "closed_at", "event_count", "head_hash"]


@login_required
@require_GET
def runs_csv(request: HttpRequest) -> HttpResponse:
    """The run list, with its filters, as CSV: every run the person may see that matches."""
    try:
        filters = RunFilter.from_query(request.GET)
    except FilterError as exc:
        return HttpResponse(str(exc), status=400, content_type=PLAIN)
    runs = filters.apply(Run.objects.visible_to(request.user)).order_by("-started_at", "-id")
    rows = (
        (str(u), ns, agent, wf, run_id, wtype, status, started.isoformat(),
         closed.isoformat() if closed else "", count, head)
        for u, ns, agent, wf, run_id, wtype, status, started, closed, count, head in
        runs.values_list("uuid", "namespace__slug", "agent__name", "workflow_id", "run_id",
                         "workflow_type", "status", "started_at", "closed_at", "event_count",
                         "head_hash").iterator(chunk_size=2000)
    )
    response = StreamingHttpResponse(csv_rows(CSV_HEADER, rows), content_type="text/csv")
    response["Content-Disposition"] = 'attachment; filename="runs.csv"'
    return response

