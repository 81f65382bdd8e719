"""Admin for namespaces, members, agents and tokens. A token's secret is shown once, in the
message after it is created; the admin never stores or shows it again. Tokens are created and
revoked through `access.tokens`, so each is recorded in the audit log."""

from __future__ import annotations

from django.contrib import admin, messages

from access.models import Agent, Membership, Namespace, Token
from access.tokens import issue_token, revoke_token


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(Namespace)
class NamespaceAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "created_at"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "namespace", "role", "created_at"]
    list_filter = ["role", "namespace"]
    search_fields = ["user__username", "namespace__slug"]
    autocomplete_fields = ["user", "namespace"]


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
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
