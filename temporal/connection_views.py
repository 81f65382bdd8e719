"""Pages for namespace admins: the namespace's Temporal connections, adding one, changing one.

Both need the administer capability: outsiders get 404, other members 403. Secrets (API key,
TLS client key) are write-only fields: the page says whether one is set, never what it is.
"""

from __future__ import annotations

import re

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from access.roles import Capability
from access.views import get_namespace_for
from interventions.outbound import RefusedAddress
from temporal.client import check_address
from temporal.connections import PLAIN_FIELDS, ConnectionRefused, save_connection
from temporal.models import TemporalConnection

CONNECTIONS = "temporal/connections.html"
CONNECTION_EDIT = "temporal/connection_edit.html"
ADDRESS = re.compile(r"[A-Za-z0-9.\-\[\]:]+:\d{1,5}")


class ConnectionForm(forms.ModelForm):
    api_key = forms.CharField(
        required=False, strip=True, widget=forms.PasswordInput(render_value=False),
        label="API key",
        help_text="Stored encrypted, never shown again. Empty keeps the stored one.",
    )
    clear_api_key = forms.BooleanField(required=False, label="Remove the stored API key")
    tls_client_key = forms.CharField(
        required=False, widget=forms.PasswordInput(render_value=False),
        label="TLS client key (PEM)", help_text="For mutual TLS. Stored encrypted, never shown.",
    )
    clear_tls_client_key = forms.BooleanField(required=False,
                                              label="Remove the stored TLS client key")

    class Meta:
        model = TemporalConnection
        fields = ["name", *PLAIN_FIELDS]
        labels = {"temporal_namespace": "Temporal namespace", "tls": "Use TLS",
                  "tls_ca_pem": "TLS CA certificate (PEM)",
                  "tls_client_cert_pem": "TLS client certificate (PEM)",
                  "workflow_query": "Follow only workflows matching (visibility query)",
                  "approval_signal": "Signal name for approval decisions"}

    def __init__(self, *args, editing: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if editing:
            del self.fields["name"]  # it names the connection's agent

    def clean_address(self):
        address = self.cleaned_data["address"].strip()
        if not ADDRESS.fullmatch(address):
            raise forms.ValidationError("Give host:port, e.g. temporal.internal:7233.")
        try:
            check_address(address, unresolvable_ok=True)
        except RefusedAddress as exc:
            raise forms.ValidationError(str(exc).removeprefix("address: ")) from None
        return address


@login_required
@require_http_methods(["GET", "POST"])
def connections(request: HttpRequest, slug: str) -> HttpResponse:
    namespace = get_namespace_for(request.user, slug, need=Capability.ADMINISTER)
    form = ConnectionForm(_posted(request))
    if request.method == "POST" and form.is_valid():
        saved = _save(request, form, namespace, None)
        if saved is not None:
            messages.success(request, f"Temporal connection {saved.name} added; following "
                             "starts within seconds when a worker serves the temporal queue.")
            return redirect("temporal-connections", slug=namespace.slug)
    listed = TemporalConnection.objects.filter(namespace=namespace).select_related("agent")
    status = 400 if form.errors else 200
    return render(request, CONNECTIONS, {"namespace": namespace, "form": form,
                                         "connections": listed}, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def edit_connection(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    namespace = get_namespace_for(request.user, slug, need=Capability.ADMINISTER)
    connection = get_object_or_404(TemporalConnection.objects.select_related("agent"),
                                   namespace=namespace, name=name)
    form = ConnectionForm(_posted(request), instance=connection, editing=True)
    saved = request.method == "POST" and form.is_valid() and _save(
        request, form, namespace, connection
    )
    if saved:
        messages.success(request, f"Temporal connection {connection.name} saved.")
        return redirect("temporal-connection", slug=namespace.slug, name=connection.name)
    status = 400 if form.errors else 200
    return render(request, CONNECTION_EDIT, {"namespace": namespace, "form": form,
                                             "connection": connection}, status=status)


def _posted(request: HttpRequest):
    """The form's data: an empty POST still binds the form (`request.POST or None` would not),
    so it answers 400 naming the required fields rather than showing the form again."""
    return request.POST if request.method == "POST" else None


def _save(request, form: ConnectionForm, namespace, connection):
    data = form.cleaned_data
    try:
        return save_connection(
            namespace, {key: data[key] for key in ["name", *PLAIN_FIELDS] if key in data},
            connection=connection, api_key=data["api_key"], clear_api_key=data["clear_api_key"],
            tls_client_key=data["tls_client_key"],
            clear_tls_client_key=data["clear_tls_client_key"], actor=request.user,
            request=request,
        )
    except ConnectionRefused as exc:
        form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        return None
