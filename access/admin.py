"""Admin for namespaces, members, agents and tokens. A token's secret is shown once, in the
message after it is created; the admin never stores or shows it again. Tokens are created and
revoked through `access.tokens`, so each is recorded in the audit log."""

from __future__ import annotations

from django.contrib import admin, messages
from django.forms.models import model_to_dict

from access.models import Agent, Membership, Namespace, Token
from access.tokens import issue_token, revoke_token
from audit.log import record


def _snapshot(obj) -> dict:
    """The fields of a row, as text, for an audit entry's before and after."""
    return {name: None if value is None else str(value)
            for name, value in model_to_dict(obj).items()}


def _namespace_of(obj):
    return obj if isinstance(obj, Namespace) else getattr(obj, "namespace", None)


class AuditedAdmin(admin.ModelAdmin):
    """Changes made in the admin are operator actions too: each save and delete, inline rows
    included, is written to the audit log as `admin.<model>.<created|changed|deleted>`."""

    def _record(self, request, obj, verb: str, before=None, after=None) -> None:
        record(
            f"admin.{obj._meta.model_name}.{verb}", actor=request.user, request=request,
            namespace=_namespace_of(obj), obj=obj, before=before, after=after,
        )

    def save_model(self, request, obj, form, change):
        before = _snapshot(type(obj).objects.get(pk=obj.pk)) if change and obj.pk else None
        super().save_model(request, obj, form, change)
        self._record(request, obj, "changed" if change else "created", before, _snapshot(obj))

    def delete_model(self, request, obj):
        before = _snapshot(obj)
        self._record(request, obj, "deleted", before)
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self._record(request, obj, "deleted", _snapshot(obj))
        super().delete_queryset(request, queryset)

    def save_formset(self, request, form, formset, change):
        befores = {
            f.instance.pk: _snapshot(type(f.instance).objects.get(pk=f.instance.pk))
            for f in formset.forms if f.instance.pk and f.has_changed()
        }
        instances = formset.save(commit=False)
        for obj in formset.deleted_objects:
            self._record(request, obj, "deleted", _snapshot(obj))
            obj.delete()
        for obj in instances:
            existed = obj.pk in befores
            obj.save()
            self._record(request, obj, "changed" if existed else "created",
                         befores.get(obj.pk), _snapshot(obj))
        formset.save_m2m()


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(Namespace)
class NamespaceAdmin(AuditedAdmin):
    list_display = ["slug", "name", "created_at"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(AuditedAdmin):
    list_display = ["user", "namespace", "role", "created_at"]
    list_filter = ["role", "namespace"]
    search_fields = ["user__username", "namespace__slug"]
    autocomplete_fields = ["user", "namespace"]


@admin.register(Agent)
class AgentAdmin(AuditedAdmin):
    list_display = ["name", "namespace", "owner_user", "owner_group", "privileged", "last_seen_at"]
    list_filter = ["namespace", "privileged"]
    search_fields = ["name", "namespace__slug"]
    autocomplete_fields = ["namespace"]


@admin.action(description="Revoke the selected tokens")
def revoke_tokens(modeladmin, request, queryset):
    # One by one rather than one UPDATE: each revocation gets its own audit entry.
    count = sum(
        revoke_token(token, actor=request.user, request=request)
        for token in queryset.filter(revoked_at__isnull=True)
    )
    modeladmin.message_user(request, f"Revoked {count} tokens.", messages.SUCCESS)


@admin.register(Token)
class TokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "kind", "agent", "user", "name", "created_at", "last_used_at",
                    "revoked_at"]
    list_filter = ["kind", "revoked_at"]
    search_fields = ["prefix", "name", "agent__name", "user__username"]
    actions = [revoke_tokens]
    fields = ["kind", "agent", "user", "name", "prefix", "created_by", "created_at",
              "last_used_at", "revoked_at"]

    def get_readonly_fields(self, request, obj=None):
        base = ["prefix", "created_by", "created_at", "last_used_at", "revoked_at"]
        if obj is not None:  # a token's binding never changes after it is issued
            return [*base, "kind", "agent", "user"]
        return base

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        token, secret = issue_token(
            agent=obj.agent if obj.kind == "agent" else None,
            user=obj.user if obj.kind == "user" else None,
            name=obj.name,
            created_by=request.user,
            actor=request.user,
            request=request,
        )
        obj.pk = token.pk
        obj.refresh_from_db()
        self.message_user(
            request,
            f"Token created. Copy it now; it will not be shown again: {secret}",
            messages.WARNING,
        )

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead, so events keep naming the token that sent them
