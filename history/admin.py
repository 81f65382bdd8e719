"""Admin for runs; events are shown read-only, since only producers write histories."""

from __future__ import annotations

from django.contrib import admin

from history.models import Event, Run


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # histories are append-only; deleting a run would cascade to its events


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    list_display = ["workflow_id", "run_id", "namespace", "agent", "workflow_type", "status",
                    "started_at", "event_count", "contiguous_through"]
    list_filter = ["status", "namespace"]
    search_fields = ["workflow_id", "run_id", "uuid"]
    show_full_result_count = False


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ["run", "event_id", "type", "time", "identity", "received_seq"]
    list_select_related = ["run"]
    search_fields = ["run__workflow_id", "type"]
    show_full_result_count = False
    # Event attributes are shown masked: the admin is not the place for raw payloads.
    exclude = ["attributes", "salt"]
