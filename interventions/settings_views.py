"""Pages for namespace admins: approval policies (the floor of approvals and risk per agent and
tool) and each agent's connector (pull, or a webhook with its signing secret).

Both need the administer capability in the namespace: outsiders get 404, other members 403
(`access.views.get_namespace_for`). Every change is recorded in the audit log.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_http_methods, require_POST

from access.models import Agent, Namespace
from access.roles import Capability
from access.views import get_namespace_for
from audit.log import record
from interventions import connector_settings, outbound
from interventions.approvals import MAX_APPROVALS
from interventions.models import AgentConnector, ApprovalPolicy
from interventions.vocabulary import ConnectorKind

POLICIES = "interventions/policies.html"
POLICY_EDIT = "interventions/policy_edit.html"
CONNECTOR = "interventions/connector.html"


# --- approval policies ---------------------------------------------------------------------


class PolicyForm(forms.ModelForm):
    tool = forms.CharField(
        max_length=200, initial=ApprovalPolicy.ANY_TOOL,
        help_text="The tool or action name the agent asks about, or * for every one.",
    )
    min_approvals = forms.IntegerField(
        min_value=1, max_value=MAX_APPROVALS, initial=1, label="Minimum approvals"
    )

    class Meta:
        model = ApprovalPolicy
        fields = ["agent", "tool", "min_approvals", "min_risk"]
        labels = {"min_risk": "Minimum risk"}

    def __init__(self, *args, namespace: Namespace, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["agent"].queryset = Agent.objects.filter(namespace=namespace).select_related(
            "namespace"
        )


def _policy_facts(policy: ApprovalPolicy) -> dict:
    return {"agent": policy.agent.name, "tool": policy.tool,
            "min_approvals": policy.min_approvals, "min_risk": policy.min_risk}


def _save_policy(request: HttpRequest, form: PolicyForm, namespace: Namespace,
                 before: dict | None) -> bool:
    """Save the form's policy with its audit entry; False (and a form error) on a duplicate
    that slipped past the form's check (two admins adding the same one at once)."""
    policy = form.save(commit=False)
    policy.updated_by = request.user
    policy.updated_at = timezone.now()
    try:
        with transaction.atomic():  # keeps an outer transaction usable on a duplicate
            policy.save()
            record("policy.changed", actor=request.user, request=request, namespace=namespace,
                   obj=policy, before=before, after=_policy_facts(policy))
    except IntegrityError:
        form.add_error("tool", "This agent has a policy for this tool already.")
        return False
    return True


def _policies_response(request: HttpRequest, namespace: Namespace, form: PolicyForm,
                       status: int = 200, notice: str = "") -> HttpResponse:
    context = {
        "namespace": namespace,
        "policies": ApprovalPolicy.objects.filter(agent__namespace=namespace).select_related(
            "agent", "updated_by"
        ),
        "form": form,
        "notice": notice,
    }
    template = f"{POLICIES}#policies" if request.htmx else POLICIES
    return render(request, template, context, status=status)


def _policies_done(request: HttpRequest, namespace: Namespace, notice: str) -> HttpResponse:
    """After a change: the region again with a fresh form (htmx), or back to the page (PRG)."""
    if request.htmx:
        return _policies_response(request, namespace, PolicyForm(namespace=namespace),
                                  notice=notice)
    messages.success(request, notice)
    return redirect("namespace-approval-policies", slug=namespace.slug)


@login_required
@require_http_methods(["GET", "POST"])
def policies(request: HttpRequest, slug: str) -> HttpResponse:
    """The namespace's policies, and a form to add one."""
    namespace = get_namespace_for(request.user, slug, need=Capability.ADMINISTER)
    form = PolicyForm(request.POST or None, namespace=namespace)
    if request.method == "POST":
        if form.is_valid() and _save_policy(request, form, namespace, before=None):
            return _policies_done(request, namespace, "Policy added.")
        return _policies_response(request, namespace, form, status=400)
    return _policies_response(request, namespace, form)


@login_required
@require_http_methods(["GET", "POST"])
def edit_policy(request: HttpRequest, slug: str, policy_id: int) -> HttpResponse:
    namespace = get_namespace_for(request.user, slug, need=Capability.ADMINISTER)
    policy = get_object_or_404(
        ApprovalPolicy.objects.select_related("agent"), pk=policy_id, agent__namespace=namespace
    )
    before = _policy_facts(policy)  # before the form writes its values into the instance
    form = PolicyForm(request.POST or None, instance=policy, namespace=namespace)
    saved = request.method == "POST" and form.is_valid() and _save_policy(
        request, form, namespace, before=before
    )
    if saved:
        return _policies_done(request, namespace, "Policy saved.")
    return render(
        request, POLICY_EDIT,
        {"namespace": namespace, "policy": policy, "form": form},
        status=400 if request.method == "POST" else 200,
    )


@login_required
@require_POST
def delete_policy(request: HttpRequest, slug: str, policy_id: int) -> HttpResponse:
    namespace = get_namespace_for(request.user, slug, need=Capability.ADMINISTER)
    with transaction.atomic():
        policy = get_object_or_404(
            ApprovalPolicy.objects.select_for_update().select_related("agent"),
            pk=policy_id, agent__namespace=namespace,
        )
        record("policy.changed", actor=request.user, request=request, namespace=namespace,
               obj=policy, before=_policy_facts(policy), after=None)
        policy.delete()
    return _policies_done(request, namespace, "Policy removed.")


# --- an agent's connector ------------------------------------------------------------------


class ConnectorForm(forms.Form):
    kind = forms.ChoiceField(
        # A Temporal connector comes with a Temporal connection (temporal app), not from here.
        choices=[(value, label) for value, label in ConnectorKind.choices
                 if value != ConnectorKind.TEMPORAL],
        initial=ConnectorKind.PULL, widget=forms.RadioSelect,
        label="Commands reach the agent by",
    )
    url = forms.URLField(
        max_length=500, required=False, assume_scheme="https", label="Webhook URL",
        help_text="Commands are POSTed here, signed with the secret shown once after saving.",
    )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("kind") != ConnectorKind.WEBHOOK or "url" in self.errors:
            return cleaned
        if not cleaned.get("url"):
            self.add_error("url", "A webhook needs a URL.")
            return cleaned
        try:
            outbound.check_url(cleaned["url"])
        except outbound.RefusedAddress as exc:
            self.add_error("url", str(exc).removeprefix("url: "))
        return cleaned


@login_required
@require_http_methods(["GET", "POST"])
def agent_connector(request: HttpRequest, slug: str, agent_id: int) -> HttpResponse:
    """Choose pull or webhook. A new signing secret is shown in this response only: it is
    neither stored readable nor put in a message or a cookie, so a reload shows it no more."""
    namespace = get_namespace_for(request.user, slug, need=Capability.ADMINISTER)
    agent = get_object_or_404(Agent.objects.select_related("namespace"), pk=agent_id,
                              namespace=namespace)
    connector = AgentConnector.objects.select_related("updated_by").filter(agent=agent).first()
    initial = {"kind": connector.kind, "url": connector.url} if connector else {}
    form = ConnectorForm(request.POST or None, initial=initial)
    secret = ""
    if request.method == "POST" and form.is_valid():
        try:
            connector, secret = connector_settings.configure(
                agent, kind=form.cleaned_data["kind"], url=form.cleaned_data["url"],
                rotate=request.POST.get("action") == "rotate", actor=request.user,
                request=request,
            )
        except outbound.RefusedAddress as exc:  # the address changed since the form's check
            form.add_error("url", str(exc).removeprefix("url: "))
        else:
            if not secret and not request.htmx:
                messages.success(request, f"Connector of {agent.name} saved.")
                return redirect("agent-connector", slug=namespace.slug, agent_id=agent.pk)
            form = ConnectorForm(initial={"kind": connector.kind, "url": connector.url})
    context = {"namespace": namespace, "agent": agent, "connector": connector, "form": form,
               "secret": secret, "saved": request.method == "POST" and not form.errors}
    template = f"{CONNECTOR}#connector" if request.htmx else CONNECTOR
    status = 400 if form.errors else 200
    response = render(request, template, context, status=status)
    if secret:
        add_never_cache_headers(response)  # no copy of the secret in any cache
    return response
