"""Pages for importing Temporal history files: the upload form with a namespace's recent
imports, and one import's progress (polled by htmx while a Celery task imports a large file).

Importing needs the investigate capability in the namespace (investigators and admins):
outsiders get 404, other members 403 (`access.views.get_namespace_for`).
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import filesizeformat
from django.views.decorators.http import require_GET, require_http_methods

from access.roles import Capability
from access.views import get_namespace_for
from temporal.importer import DEFAULT_AGENT, ImportRefused, start_import
from temporal.models import ImportState, TemporalImport

IMPORT_PAGE = "temporal/import.html"
IMPORT_DETAIL = "temporal/import_detail.html"
HTMX_STOP_POLLING = 286


class ImportForm(forms.Form):
    file = forms.FileField(
        help_text="A Temporal history as JSON, e.g. from temporal workflow show -o json."
    )
    agent = forms.CharField(
        max_length=200, required=False, initial=DEFAULT_AGENT,
        help_text=f"The agent the runs belong to (default {DEFAULT_AGENT}; a new name needs "
        "the admin role).",
    )
    workflow_id = forms.CharField(
        max_length=255, required=False,
        help_text="Only for files that do not name their workflow (no start event).",
    )
    run_id = forms.CharField(max_length=255, required=False,
                             help_text="Only for files that do not name their run.")

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > settings.TEMPORAL_IMPORT_MAX_BYTES:
            raise forms.ValidationError(
                f"The file is {filesizeformat(upload.size)}; the limit is "
                f"{filesizeformat(settings.TEMPORAL_IMPORT_MAX_BYTES)}."
            )
        return upload


@login_required
@require_http_methods(["GET", "POST"])
def import_page(request: HttpRequest, slug: str) -> HttpResponse:
    namespace = get_namespace_for(request.user, slug, need=Capability.INVESTIGATE)
    form = ImportForm(request.POST or None, request.FILES or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            imp = start_import(
                namespace=namespace, user=request.user, content=data["file"].read(),
                filename=data["file"].name, agent_name=data["agent"],
                workflow_id=data["workflow_id"], run_id=data["run_id"], request=request,
            )
        except ImportRefused as exc:
            form.add_error("agent", exc.message)
            status = exc.status
        else:
            if imp.state == ImportState.FAILED:
                form.add_error("file", imp.error)
                status = imp.error_status or 400
            else:
                if imp.state == ImportState.DONE:
                    messages.success(request, _done_message(imp))
                return redirect("temporal-import", slug=namespace.slug, import_uuid=imp.uuid)
    elif request.method == "POST":
        status = 400
    recent = TemporalImport.objects.filter(namespace=namespace).select_related(
        "agent", "requested_by"
    ).defer("content")[:20]
    context = {"namespace": namespace, "form": form, "recent": recent,
               "inline_limit": settings.TEMPORAL_IMPORT_INLINE_MAX_BYTES}
    return render(request, IMPORT_PAGE, context, status=status)


def _done_message(imp: TemporalImport) -> str:
    runs = len(imp.runs)
    return (f"Imported {imp.filename or 'the file'}: {imp.stored} new events, "
            f"{imp.duplicates} already stored, in {runs} run{'s' if runs != 1 else ''}.")


@login_required
@require_GET
def import_detail(request: HttpRequest, slug: str, import_uuid) -> HttpResponse:
    """One import: its state, progress and runs. The htmx poll of the status region stops
    (286) once the import is finished."""
    namespace = get_namespace_for(request.user, slug, need=Capability.INVESTIGATE)
    imp = TemporalImport.objects.filter(namespace=namespace, uuid=import_uuid).select_related(
        "agent", "requested_by"
    ).defer("content").first()
    if imp is None:
        raise Http404("No such import.")
    context = {"namespace": namespace, "imp": imp}
    if request.htmx:
        status = HTMX_STOP_POLLING if imp.is_finished else 200
        return render(request, f"{IMPORT_DETAIL}#import-status", context, status=status)
    return render(request, IMPORT_DETAIL, context)
