"""Pages for namespace admins: members and their roles, and agents' owners and scope."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from access.models import Agent, Membership, Namespace
from access.permissions import has_capability
from access.roles import Capability, Role
from audit.log import record


def get_namespace_for(user, slug: str, need: str = Capability.VIEW) -> Namespace:
    """404 for a namespace the user cannot see at all, 403 without the needed capability."""
    namespace = Namespace.objects.visible_to(user).filter(slug=slug).first()
    if namespace is None:
        raise Http404("No such namespace.")
    if need != Capability.VIEW and not has_capability(user, namespace.pk, need):
        raise PermissionDenied(f"This needs the {need} capability in {namespace.slug}.")
    return namespace


class AddMemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices)

    def clean_username(self):
        name = self.cleaned_data["username"]
        user = get_user_model().objects.filter(username=name, is_active=True).first()
        if user is None:
            raise forms.ValidationError(f"No active user is named {name!r}.")
        return user


@login_required
@require_http_methods(["GET", "POST"])
def members(request: HttpRequest, slug: str) -> HttpResponse:
    namespace = get_namespace_for(request.user, slug)
    can_admin = has_capability(request.user, namespace.pk, Capability.ADMINISTER)
    form = AddMemberForm(request.POST or None)
    if request.method == "POST":
        if not can_admin:
            raise PermissionDenied("Only the namespace's admins manage its members.")
        if form.is_valid():
            try:
                with transaction.atomic():  # keeps an outer transaction usable on a duplicate
                    membership = Membership.objects.create(
                        user=form.cleaned_data["username"],
                        namespace=namespace,
                        role=form.cleaned_data["role"],
                    )
                    record(
                        "member.role_added", actor=request.user, request=request,
                        namespace=namespace, obj=membership, after=_described(membership),
                    )
            except IntegrityError:
                form.add_error("role", "That user already holds this role here.")
            else:
                messages.success(request, "Member added.")
                return redirect("namespace-members", slug=namespace.slug)
    memberships = namespace.memberships.select_related("user").order_by("user__username", "role")
    return render(
        request,
        "access/members.html",
        {"namespace": namespace, "memberships": memberships, "form": form, "can_admin": can_admin},
        status=400 if request.method == "POST" else 200,
    )


@login_required
@require_POST
def remove_member(request: HttpRequest, slug: str, membership_id: int) -> HttpResponse:
    namespace = get_namespace_for(request.user, slug, need=Capability.ADMINISTER)
    with transaction.atomic():
        # Lock the namespace's admin rows: two admins removing each other at the same moment
        # must not leave the namespace with none.
        admins = list(namespace.memberships.select_for_update().filter(role=Role.ADMIN))
        membership = get_object_or_404(Membership, pk=membership_id, namespace=namespace)
        if membership.role == Role.ADMIN and len(admins) == 1:
            messages.error(request, "A namespace keeps at least one admin.")
        else:
            record(
                "member.role_removed", actor=request.user, request=request,
                namespace=namespace, obj=membership, before=_described(membership),
            )
            membership.delete()
            messages.success(request, "Role removed.")
    return redirect("namespace-members", slug=namespace.slug)


def _described(membership: Membership) -> dict:
    return {"user": membership.user.get_username(), "role": membership.role}


class AgentForm(forms.ModelForm):
    owner_user = forms.ModelChoiceField(
        queryset=get_user_model().objects.none(), required=False, label="Owner (user)"
    )
    owner_group = forms.ModelChoiceField(
        queryset=Group.objects.all(), required=False, label="Owner (group)"
    )
    allowed_tools = forms.CharField(
        required=False,
        help_text="One tool name per line.",
        widget=forms.Textarea(attrs={"rows": 4}),
    )

    class Meta:
        model = Agent
        fields = ["description", "owner_user", "owner_group", "allowed_tools", "privileged"]

    def __init__(self, *args, namespace: Namespace, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["owner_user"].queryset = get_user_model().objects.filter(
            memberships__namespace=namespace
        ).distinct()
        # Groups are global in Django: offer only those with a member in this namespace, so
        # one tenant's admins do not see (or pick) another tenant's groups.
        self.fields["owner_group"].queryset = Group.objects.filter(
            user__memberships__namespace=namespace
        ).distinct()
        if self.instance.pk and not self.is_bound:
            self.initial["allowed_tools"] = "\n".join(self.instance.allowed_tools)

    def clean_allowed_tools(self):
        lines = self.cleaned_data["allowed_tools"].splitlines()
        return sorted({line.strip() for line in lines if line.strip()})

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("owner_user") and cleaned.get("owner_group"):
            raise forms.ValidationError("Choose a user or a group as owner, not both.")
        return cleaned


@login_required
@require_http_methods(["GET", "POST"])
def edit_agent(request: HttpRequest, slug: str, agent_id: int) -> HttpResponse:
    namespace = get_namespace_for(request.user, slug, need=Capability.ADMINISTER)
    agent = get_object_or_404(Agent, pk=agent_id, namespace=namespace)
    before = _agent_settings(agent)
    form = AgentForm(request.POST or None, instance=agent, namespace=namespace)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():  # the change and its audit entry commit together
            form.save()
            _record_agent_change(request, agent, before)
        messages.success(request, f"Agent {agent.name} saved.")
        return redirect("agents")
    return render(
        request,
        "access/agent_form.html",
        {"namespace": namespace, "agent": agent, "form": form},
        status=400 if request.method == "POST" else 200,
    )


def _agent_settings(agent: Agent) -> dict:
    return {
        "owner": str(agent.owner) if agent.owner else None,
        "owner_kind": "user" if agent.owner_user_id else "group" if agent.owner_group_id else None,
        "description": agent.description,
        "allowed_tools": list(agent.allowed_tools),
        "privileged": agent.privileged,
    }


def _record_agent_change(request: HttpRequest, agent: Agent, before: dict) -> None:
    """One entry naming only what changed; `agent.owner_changed` when the owner is among it,
    since that is what reviews of accountability look for."""
    after = _agent_settings(agent)
    changed = [key for key in after if after[key] != before[key]]
    if not changed:
        return
    owner_changed = "owner" in changed or "owner_kind" in changed
    record(
        "agent.owner_changed" if owner_changed else "agent.changed",
        actor=request.user, request=request, namespace=agent.namespace, obj=agent,
        before={key: before[key] for key in changed},
        after={key: after[key] for key in changed},
    )
