"""Pages of the site shell."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from access.models import Namespace
from history.models import Run


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The namespaces the user may see, with their runs counted by status."""
    namespaces = list(Namespace.objects.visible_to(request.user))
    counts = (
        Run.objects.filter(namespace__in=namespaces)
        .values("namespace_id", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    by_namespace: dict[int, dict[str, int]] = {}
    for row in counts:
        by_namespace.setdefault(row["namespace_id"], {})[row["status"]] = row["n"]
    rows = [(ns, sorted(by_namespace.get(ns.pk, {}).items())) for ns in namespaces]
    return render(request, "dashboard/home.html", {"rows": rows})
