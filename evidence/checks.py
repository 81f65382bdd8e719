"""System checks: a production server needs a signing key it did not make up itself."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Tags, register
from django.core.exceptions import ImproperlyConfigured


@register(Tags.security, deploy=True)
def signing_key_configured(app_configs, **kwargs) -> list[Error]:
    """evidence.E001 without a key when DEBUG is off; E002 for a key that does not parse
    (the message names the variable, never the value)."""
    from evidence import keys

    if not settings.DEBUG and not (
        settings.EVIDENCE_SIGNING_KEY or settings.EVIDENCE_SIGNING_KEY_FILE
    ):
        return [Error(
            "No evidence signing key is configured.",
            hint="Set EVIDENCE_SIGNING_KEY (PEM or base64 seed) or EVIDENCE_SIGNING_KEY_FILE; "
                 "docs/evidence.md shows how to make one.",
            id="evidence.E001",
        )]
    try:
        keys.signing_key()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="evidence.E002")]
    return []
