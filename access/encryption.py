"""Secrets at rest (webhook signing secrets, later Temporal API keys): encrypted with Fernet
(AES-128-CBC with HMAC-SHA256) so that a database dump alone does not reveal them.

Keys come from FLIGHTDECK_ENCRYPTION_KEYS (comma-separated Fernet keys; the first encrypts, all
decrypt, which is how a key is rotated). Without it, one key is derived from SECRET_KEY with
HKDF, so rotating SECRET_KEY then makes stored secrets unreadable: production should set its own.
"""

from __future__ import annotations

import base64
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class UnreadableSecret(Exception):
    """A stored secret that none of the configured keys opens."""


@cache
def _fernet() -> MultiFernet:
    keys = list(settings.FLIGHTDECK_ENCRYPTION_KEYS)
    if not keys:
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"flightdeck secrets at rest"
        ).derive(settings.SECRET_KEY.encode())
        keys = [base64.urlsafe_b64encode(derived).decode()]
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(
            "FLIGHTDECK_ENCRYPTION_KEYS: each key must be 32 url-safe base64-encoded bytes "
            "(make one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())')"
        ) from exc


def seal(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def unseal(sealed: str) -> str:
    try:
        return _fernet().decrypt(sealed.encode()).decode()
    except InvalidToken:
        raise UnreadableSecret(
            "a stored secret could not be decrypted with FLIGHTDECK_ENCRYPTION_KEYS"
        ) from None
