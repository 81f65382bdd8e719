"""Admin for interventions' settings. Connectors are read-only here: their webhook URL must
pass the address checks and their secret is made, shown once and sealed by the connector page
(`/namespaces/<slug>/agents/<id>/connector/`), which also audits the change. The sealed secret
is never shown, not even encrypted."""

from __future__ import annotations

from django.contrib import admin

from interventions.models import AgentConnector


@admin.register(AgentConnector)
class AgentConnectorAdmin(admin.ModelAdmin):
    list_display = ["agent", "kind", "url", "has_secret", "updated_by", "updated_at"]
    list_filter = ["kind"]
    search_fields = ["agent__name", "agent__namespace__slug", "url"]
    list_select_related = ["agent__namespace", "updated_by"]
    exclude = ["secret_sealed"]
    readonly_fields = ["agent", "kind", "url", "has_secret", "updated_by", "updated_at"]

    @admin.display(boolean=True, description="signing secret set")
    def has_secret(self, obj: AgentConnector) -> bool:
        return bool(obj.secret_sealed)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
