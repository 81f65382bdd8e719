"""Find a run for a signed-in user, enforcing namespace roles: one helper for every page."""

from __future__ import annotations

import uuid as uuid_module

from django.core.exceptions import PermissionDenied
from django.http import Http404

from access.permissions import has_capability
from access.roles import Capability
from history.models import Run


def get_run_for(user, run_uuid, need: str = Capability.VIEW) -> Run:
    """The run with this UUID if `user` may see it (404 otherwise, so that other tenants' ids
    are never confirmed), and 403 if they may see it but lack the `need` capability."""
    try:
        key = run_uuid if isinstance(run_uuid, uuid_module.UUID) else uuid_module.UUID(run_uuid)
    except (ValueError, TypeError):
        raise Http404("No such run.") from None
    run = (
        Run.objects.visible_to(user)
        .select_related("namespace", "agent", "agent__owner_user", "agent__owner_group")
        .filter(uuid=key)
        .first()
    )
    if run is None:
        raise Http404("No such run.")
    if need != Capability.VIEW and not has_capability(user, run.namespace_id, need):
        raise PermissionDenied(f"This needs the {need} capability in {run.namespace.slug}.")
    return run


def may_see_raw(user, run: Run) -> bool:
    return has_capability(user, run.namespace_id, Capability.INVESTIGATE)
