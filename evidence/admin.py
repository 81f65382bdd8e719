from django.contrib import admin

from evidence.models import EvidenceExport, SignedDigest


@admin.register(EvidenceExport)
class EvidenceExportAdmin(admin.ModelAdmin):
    """Read-only: exports change only through evidence.exports, which audits them."""

    list_display = ("id", "requested_by_label", "kind", "raw", "state", "runs_total",
                    "created_at")
    list_filter = ("state", "kind", "raw")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(SignedDigest)
class SignedDigestAdmin(admin.ModelAdmin):
    list_display = ("seq", "created_at", "run_count", "sha256", "written_at", "webhook_sent_at")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
