from django.contrib import admin

from evidence.models import EvidenceExport, SignedDigest
from history.admin import ReadOnlyAdmin


@admin.register(EvidenceExport)
class EvidenceExportAdmin(ReadOnlyAdmin):
    """Read-only, and no deletes: exports change only through evidence.exports, which audits
    them and removes their files. Staff see the exports they asked for (evidence's rule)."""

    list_display = ("id", "requested_by_label", "kind", "raw", "state", "runs_total",
                    "created_at")
    list_filter = ("state", "kind", "raw")

    def get_queryset(self, request):
        return super().get_queryset(request) & EvidenceExport.objects.visible_to(request.user)


@admin.register(SignedDigest)
class SignedDigestAdmin(ReadOnlyAdmin):
    list_display = ("seq", "created_at", "run_count", "sha256", "written_at", "webhook_sent_at")
