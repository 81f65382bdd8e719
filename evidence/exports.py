"""The life of an export, in one place: requested (audited, enqueued), claimed and built by a
worker, finished or failed, downloaded (audited each time), expired.

The audit entries are the chain of custody: who asked for which evidence, raw or redacted and
why; the SHA-256 of the bundle they were handed and of its signed manifest; every download.
An export spanning several namespaces is recorded once in each, so every namespace's
investigators see who took evidence of its runs.
"""

from __future__ import annotations

import hashlib
import logging
import os
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from access.models import Namespace
from audit.log import actor_label, record
from evidence.bundle import write_bundle
from evidence.models import EvidenceExport, ExportState
from evidence.scope import ExportScope

log = logging.getLogger(__name__)


def _audit(action: str, export: EvidenceExport, *, actor=None, request=None, after=None):
    for namespace in export.namespaces.all():
        record(
            action, actor=actor, request=request, namespace=namespace, obj=export,
            object_type="evidence.export", object_repr=export.label, after=after,
        )


def request_export(user, scope: ExportScope, *, raw: bool, reason: str, request=None
                   ) -> EvidenceExport:
    """Create the export (its runs fixed now, as the person sees them) and enqueue its build.
    Raises ScopeError, Http404 or PermissionDenied from the scope."""
    from evidence.tasks import build_export

    run_uuids, events, namespace_ids = scope.resolve(user)
    with transaction.atomic():
        export = EvidenceExport.objects.create(
            requested_by=user, requested_by_label=actor_label(user), kind=scope.kind,
            scope=scope.params, run_uuids=run_uuids, raw=raw, reason=reason,
            runs_total=len(run_uuids), events_total=events,
        )
        export.namespaces.set(Namespace.objects.filter(pk__in=namespace_ids))
        _audit("evidence.export_requested", export, actor=user, request=request, after={
            "scope": scope.describe(), "raw": raw, "reason": reason, "runs": len(run_uuids),
            "events": events,
        })
        build_export.delay_on_commit(str(export.id))
    return export


def claim(export_id) -> EvidenceExport | None:
    """Take the export for building: a queued one, or a running one whose worker went quiet
    (it died; the message came back). None when another worker holds it or it is done."""
    now = timezone.now()
    quiet = now - timedelta(seconds=settings.EVIDENCE_EXPORT_STALL_SECONDS)
    moved = EvidenceExport.objects.filter(pk=export_id).filter(
        Q(state=ExportState.QUEUED) | Q(state=ExportState.RUNNING, heartbeat_at__lte=quiet)
    ).update(state=ExportState.RUNNING, started_at=now, heartbeat_at=now, runs_done=0,
             events_done=0)
    return EvidenceExport.objects.filter(pk=export_id).first() if moved else None


def build(export: EvidenceExport) -> None:
    """Write the bundle next to its final name, then move it there and mark the export ready.
    Progress and a heartbeat are written as it goes, for the page and for `claim`."""
    folder = Path(settings.EVIDENCE_EXPORT_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{export.id}.zip"
    partial = folder / f"{export.id}.{os.getpid()}.partial"

    def progress(runs: int, events: int) -> None:
        EvidenceExport.objects.filter(pk=export.pk, state=ExportState.RUNNING).update(
            runs_done=runs, events_done=events, heartbeat_at=timezone.now()
        )

    try:
        result = write_bundle(export, partial, progress)
        digest = _sha256_of(partial)
        os.replace(partial, final)
    except Exception as exc:
        partial.unlink(missing_ok=True)
        fail(export, exc)
        raise
    now = timezone.now()
    with transaction.atomic():
        finished = EvidenceExport.objects.filter(pk=export.pk, state=ExportState.RUNNING).update(
            state=ExportState.READY, file_name=final.name, size_bytes=final.stat().st_size,
            sha256=digest, manifest_sha256=result.manifest_sha256,
            key_fingerprint=result.key_fingerprint, runs_done=result.runs,
            events_done=result.events, events_total=result.events, finished_at=now,
            heartbeat_at=now,
            expires_at=now + timedelta(seconds=settings.EVIDENCE_EXPORT_TTL_SECONDS),
        )
        if finished:
            export.refresh_from_db()
            _audit("evidence.exported", export, actor=export.requested_by, after={
                "raw": export.raw, "runs": result.runs, "events": result.events,
                "bundle_sha256": digest, "manifest_sha256": result.manifest_sha256,
                "key_fingerprint": result.key_fingerprint, "broken_chains": result.broken_runs,
            })


def fail(export: EvidenceExport, exc: BaseException) -> None:
    # The message names what went wrong (a run deleted meanwhile, no signing key); it never
    # holds payloads, which are written only into the bundle.
    message = f"{type(exc).__name__}: {exc}"[:2000]
    log.error("evidence export %s failed: %s", export.id, message)
    EvidenceExport.objects.filter(pk=export.pk).exclude(state=ExportState.READY).update(
        state=ExportState.FAILED, error=message, finished_at=timezone.now()
    )


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def file_path(export: EvidenceExport) -> Path:
    return Path(settings.EVIDENCE_EXPORT_DIR) / export.file_name


def record_download(export: EvidenceExport, user, request) -> None:
    _audit("evidence.downloaded", export, actor=user, request=request, after={
        "raw": export.raw, "bundle_sha256": export.sha256,
    })


def clean(now=None) -> dict:
    """Delete expired bundles, left-over partial files, and re-enqueue stalled exports."""
    from evidence.tasks import build_export

    now = now or timezone.now()
    expired = 0
    for export in EvidenceExport.objects.past_expiry(now):
        file_path(export).unlink(missing_ok=True)
        expired += EvidenceExport.objects.filter(pk=export.pk, state=ExportState.READY).update(
            state=ExportState.EXPIRED
        )
    stalled = [str(pk) for pk in EvidenceExport.objects.stalled(now).values_list("pk", flat=True)]
    for export_id in stalled:
        build_export.delay(export_id)
    folder = Path(settings.EVIDENCE_EXPORT_DIR)
    leftovers = 0
    if folder.is_dir():
        cutoff = (now - timedelta(seconds=settings.EVIDENCE_EXPORT_TTL_SECONDS)).timestamp()
        for path in folder.glob("*.partial"):
            if path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                leftovers += 1
    return {"expired": expired, "requeued": len(stalled), "partials_removed": leftovers}
