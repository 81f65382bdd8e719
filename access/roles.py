"""The roles a member can hold in a namespace, and what each role may do.

A user may hold several roles in one namespace (one Membership row each). Every permission
check in Flightdeck asks `may(user, namespace, capability)` in terms of these capabilities,
never of role names, so that adding a role changes this module only.
"""

from __future__ import annotations

from django.db import models


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    OPERATOR = "operator", "Operator"
    APPROVER = "approver", "Approver"
    INVESTIGATOR = "investigator", "Investigator"
    ADMIN = "admin", "Admin"


class Capability(models.TextChoices):
    VIEW = "view"
    OPERATE = "operate"  # pause, resume, cancel, terminate, signal
    APPROVE = "approve"  # approve, reject
    INVESTIGATE = "investigate"  # evidence export, raw payloads, audit log
    ADMINISTER = "administer"  # members, agents, tokens, settings


CAPABILITIES: dict[str, frozenset[str]] = {
    Role.VIEWER: frozenset({Capability.VIEW}),
    Role.OPERATOR: frozenset({Capability.VIEW, Capability.OPERATE}),
    Role.APPROVER: frozenset({Capability.VIEW, Capability.APPROVE}),
    Role.INVESTIGATOR: frozenset({Capability.VIEW, Capability.INVESTIGATE}),
    Role.ADMIN: frozenset(Capability.values),
}


def roles_with(capability: str) -> list[str]:
    """The roles that grant `capability`, for use in queryset filters."""
    return [role for role, caps in CAPABILITIES.items() if capability in caps]
