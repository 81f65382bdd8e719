"""Signing outgoing webhooks the Standard Webhooks way (standardwebhooks.com).

Headers: `webhook-id` (the message id; a receiver drops repeats of it), `webhook-timestamp`
(Unix seconds; a receiver refuses old ones) and `webhook-signature: v1,<base64 HMAC-SHA256 of
"{id}.{timestamp}.{body}">`. Secrets look like `whsec_<base64>`; the key is the decoded bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"  # noqa: S105 - a format prefix, not a secret


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret (or of any other string, taken as UTF-8)."""
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
        except ValueError:
            pass
    return secret.encode()


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, message_id, timestamp, body),
        "content-type": "application/json",
    }


def verify(
    secret: str, headers_in: dict[str, str], body: bytes, *, now: int, tolerance: int = 300
) -> bool:
    """What a receiver does (used by tests and the reference agents): check the timestamp is
    recent and that one of the `v1,` signatures matches, in constant time."""
    try:
        message_id = headers_in["webhook-id"]
        timestamp = int(headers_in["webhook-timestamp"])
        offered = headers_in["webhook-signature"].split()
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = signature(secret, message_id, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in offered)
