"""Capability checks for one namespace, shared by API views and pages."""

from __future__ import annotations

from access.models import Membership
from access.roles import roles_with


def has_capability(principal, namespace_id: int, capability: str) -> bool:
    """Whether a user holds a role granting `capability` in the namespace. Agent principals
    hold no roles: what an agent token may do is decided by the endpoint it calls."""
    if getattr(principal, "agent", None) is not None:
        return False
    if not principal.is_authenticated or not principal.is_active:
        return False
    if principal.is_superuser:
        return True
    return Membership.objects.filter(
        user=principal, namespace_id=namespace_id, role__in=roles_with(capability)
    ).exists()
