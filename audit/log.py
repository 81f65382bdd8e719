"""Writing the audit log: `record` is the one way in, called by every operator action."""

from __future__ import annotations

import logging

from django.db import transaction

from audit.chain import verify
from audit.models import AuditEntry, AuditHead
from history.secrets import scan

log = logging.getLogger(__name__)


def source_address(request) -> str | None:
    """The client address as the server saw it. Behind a proxy, configure the proxy to set
    REMOTE_ADDR (Flightdeck does not trust X-Forwarded-For on its own)."""
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


def actor_label(actor) -> str:
    if actor is None:
        return "system"
    agent = getattr(actor, "agent", None)
    if agent is not None:
        return f"agent:{agent}"
    return actor.get_username() if hasattr(actor, "get_username") else str(actor)


def record(
    action: str,
    *,
    actor=None,
    request=None,
    namespace=None,
    obj=None,
    object_type: str = "",
    object_id: str = "",
    object_repr: str = "",
    before=None,
    after=None,
) -> AuditEntry:
    """Append one entry, chained to the previous one. Runs in the caller's transaction when
    there is one, so an action and its audit entry commit together."""
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
        object_repr = object_repr or str(obj)[:300]
    # Operators' reasons and comments, and names agents chose, may hold a pasted credential:
    # the log, and every evidence bundle carrying it, keeps the masked form (history.secrets).
    before, after, object_repr = _masked(before), _masked(after), _masked(object_repr[:300])
    user = actor if getattr(actor, "agent", None) is None and actor is not None else None
    if user is not None and not getattr(user, "is_authenticated", False):
        user = None
    with transaction.atomic():
        # The lock serialises writers: two entries never claim the same predecessor.
        head, _ = AuditHead.objects.select_for_update().get_or_create(pk=1)
        entry = AuditEntry(
            actor_id_copy=user.pk if user is not None else None,
            actor_label=actor_label(actor),
            action=action,
            namespace_id_copy=namespace.pk if namespace is not None else None,
            namespace_slug=namespace.slug if namespace is not None else "",
            object_type=object_type,
            object_id=object_id,
            object_repr=object_repr[:300],
            before=before,
            after=after,
            source_address=source_address(request),
            prev_hash=head.hash,
        )
        entry.hash = entry.compute_hash()
        entry.save(force_insert=True)
        head.hash, head.seq = entry.hash, entry.seq
        head.save(update_fields=["hash", "seq"])
    log.info("audit %s by %s on %s %s", action, entry.actor_label, object_type, object_id)
    return entry


def _masked(value):
    """`value` (a JSON-like dict or a text) with any secret the scanner finds masked."""
    if isinstance(value, str):
        _, masked = scan({"text": value})
        return value if masked is None else masked["text"]
    if isinstance(value, dict):
        _, masked = scan(value)
        return value if masked is None else masked
    return value


def verify_chain() -> tuple[bool, int | None]:
    """Re-hash the whole log in order: (intact, seq of the first bad entry). See
    `audit.chain.verify` for the reason and the head check."""
    result = verify()
    return result.intact, result.broken_at
