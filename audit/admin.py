"""The audit log in the admin: read-only. Entries are only ever appended, by `audit.log.record`;
nobody adds, edits or deletes one here (on PostgreSQL the database refuses it anyway)."""

from __future__ import annotations

from django.contrib import admin

from audit.models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ["seq", "time", "actor_label", "action", "namespace_slug", "object_type",
                    "object_repr", "source_address"]
    list_filter = ["action", "namespace_slug"]
    search_fields = ["actor_label", "action", "object_id", "object_repr"]
    show_full_result_count = False  # a COUNT(*) over the whole log on every page is not free

    def get_queryset(self, request):
        # Staff who are not superusers see only their namespaces' entries, as on /audit/.
        return AuditEntry.objects.visible_to(request.user)

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in AuditEntry._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
