"""The audit log page: what people did, newest first, for investigators and admins of the
namespaces concerned (site-wide entries such as sign-ins for superusers only).

Filters live in the address, so a filtered view can be shared; pages go back in time by the
entry sequence (`before`), never by offset. Checking the hash chain re-hashes the whole log,
so it happens only when asked (`verify=1`).
"""

from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from access.models import Namespace
from access.roles import Capability
from audit.chain import verify
from audit.models import AuditEntry

PAGE = "audit/audit.html"
PAGE_SIZE = 50
SITE_WIDE = "-"  # the namespace filter's value for entries of no namespace (sign-ins)


class AuditFilterForm(forms.Form):
    namespace = forms.ChoiceField(required=False)
    actor = forms.CharField(required=False, max_length=200,
                            help_text="A user name, agent:<namespace>/<name> or system.")
    action = forms.CharField(required=False, max_length=60,
                             help_text="Exact, or a prefix ending in a dot: approval.")
    object = forms.CharField(required=False, max_length=100, label="Object id")
    since = forms.DateTimeField(required=False, widget=forms.DateTimeInput(
        attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"))
    until = forms.DateTimeField(required=False, widget=forms.DateTimeInput(
        attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"))
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def __init__(self, *args, namespaces: list[Namespace], site_wide: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.namespace_ids = {ns.slug: ns.pk for ns in namespaces}
        choices = [("", "all yours"), *((ns.slug, ns.slug) for ns in namespaces)]
        if site_wide:
            choices.append((SITE_WIDE, "site-wide (no namespace)"))
        self.fields["namespace"].choices = choices

    def apply(self, entries):
        """The entries matching the filters, newest first, from the cursor on."""
        data = self.cleaned_data
        if data["namespace"] == SITE_WIDE:
            entries = entries.filter(namespace_id_copy__isnull=True)
        elif data["namespace"]:
            entries = entries.filter(namespace_id_copy=self.namespace_ids[data["namespace"]])
        if data["actor"]:
            entries = entries.filter(actor_label__iexact=data["actor"].strip())
        action = data["action"].strip()
        if action.endswith("."):
            entries = entries.filter(action__startswith=action)
        elif action:
            entries = entries.filter(action=action)
        if data["object"]:
            entries = entries.filter(object_id=data["object"].strip())
        if data["since"]:
            entries = entries.filter(time__gte=data["since"])
        if data["until"]:
            entries = entries.filter(time__lt=data["until"])
        if data["before"]:
            entries = entries.filter(seq__lt=data["before"])
        return entries.order_by("-seq")


def chain_status(user) -> dict:
    """Re-hash the whole log. A break is located only for someone who may see that entry."""
    check = verify()
    broken_at = check.broken_at
    visible = broken_at is not None and AuditEntry.objects.visible_to(user).filter(
        seq=broken_at
    ).exists()
    return {"intact": check.intact, "broken_at": broken_at if visible else None,
            "cut_off": check.broken_at is None and not check.intact,
            "checked_at": timezone.now()}


@login_required
@require_GET
def audit_log(request: HttpRequest) -> HttpResponse:
    user = request.user
    namespaces = list(Namespace.objects.visible_to(user, Capability.INVESTIGATE))
    if not namespaces and not user.is_superuser:
        raise PermissionDenied("The audit log needs the investigate capability in a namespace.")
    form = AuditFilterForm(request.GET, namespaces=namespaces, site_wide=user.is_superuser)
    entries, more = [], False
    if form.is_valid():
        entries = list(
            form.apply(AuditEntry.objects.visible_to(user))[: PAGE_SIZE + 1]
        )
        more = len(entries) > PAGE_SIZE
        entries = entries[:PAGE_SIZE]
    query = request.GET.copy()
    query.pop("verify", None)
    query.pop("before", None)
    context = {
        "form": form,
        "entries": entries,
        "older_query": f"{query.urlencode()}&before={entries[-1].seq}".lstrip("&")
        if more else None,
        "query": query.urlencode(),
        "chain": chain_status(user) if request.GET.get("verify") == "1" else None,
    }
    status = 200 if form.is_valid() else 400
    if request.htmx and request.htmx.target == "chain-status":
        return render(request, f"{PAGE}#chain", context, status=status)
    if request.htmx and request.htmx.target == "audit-entries":
        return render(request, f"{PAGE}#entries", context, status=status)
    return render(request, PAGE, context, status=status)
