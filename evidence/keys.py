"""The Ed25519 key that signs evidence bundles and digests, and its fingerprint.

Where the key comes from, first match wins:

1. `EVIDENCE_SIGNING_KEY`: a PKCS#8 PEM private key (newlines may be written as `\\n`), or the
   32-byte private seed in base64;
2. `EVIDENCE_SIGNING_KEY_FILE`: a file holding either form;
3. with `DEBUG` on, `var/evidence_signing_key`, generated on first use (mode 0600).

With `DEBUG` off and neither set, signing refuses (`MissingSigningKey`) and the deploy check
`evidence.E001` fails: a production server must never sign with a key it made up itself,
since nobody could have pinned it.

The fingerprint, lowercase hex of SHA-256 over the 32 raw public key bytes, is what
investigators pin and give to the verifier.
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from evidence.verify_bundle import fingerprint_of

DEVELOPMENT_KEY_NAME = "evidence_signing_key"


class MissingSigningKey(ImproperlyConfigured):
    pass


def parse_private_key(text: str, *, source: str) -> Ed25519PrivateKey:
    """A key from PEM or a base64 seed. The error names `source`, never the value."""
    text = text.strip().replace("\\n", "\n")
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError):
            raise ImproperlyConfigured(
                f"{source}: not an unencrypted PKCS#8 PEM private key"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ImproperlyConfigured(f"{source}: the PEM key is not an Ed25519 key")
        return key
    standard = text.replace("-", "+").replace("_", "/")  # the URL-safe alphabet too
    try:
        seed = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        seed = b""
    if len(seed) != 32:
        raise ImproperlyConfigured(
            f"{source}: expected a PEM private key or a base64 32-byte Ed25519 seed"
        )
    return Ed25519PrivateKey.from_private_bytes(seed)


def _development_key_path() -> Path:
    return Path(settings.VAR_DIR) / DEVELOPMENT_KEY_NAME


@functools.lru_cache(maxsize=8)
def _load(inline: str, file_name: str, debug: bool, development_path: str) -> Ed25519PrivateKey:
    if inline:
        return parse_private_key(inline, source="EVIDENCE_SIGNING_KEY")
    if file_name:
        try:
            text = Path(file_name).read_text()
        except OSError as exc:
            raise ImproperlyConfigured(
                f"EVIDENCE_SIGNING_KEY_FILE: cannot read {file_name} ({exc.strerror})"
            ) from None
        return parse_private_key(text, source="EVIDENCE_SIGNING_KEY_FILE")
    if not debug:
        raise MissingSigningKey(
            "No evidence signing key: set EVIDENCE_SIGNING_KEY or EVIDENCE_SIGNING_KEY_FILE "
            "(docs/evidence.md says how to make one). Only with DEBUG=1 is one generated."
        )
    path = Path(development_path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # O_EXCL: two processes starting at once must not each write a different key.
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(pem)
    return parse_private_key(path.read_text(), source=str(path))


def signing_key() -> Ed25519PrivateKey:
    """The configured key; raises MissingSigningKey or ImproperlyConfigured."""
    return _load(settings.EVIDENCE_SIGNING_KEY, settings.EVIDENCE_SIGNING_KEY_FILE,
                 settings.DEBUG, str(_development_key_path()))


def public_key() -> Ed25519PublicKey:
    return signing_key().public_key()


def fingerprint() -> str:
    return fingerprint_of(public_key())


def public_key_pem() -> bytes:
    return public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def sign(data: bytes) -> str:
    """The Ed25519 signature over `data`, in base64 (one line, as bundles and digests hold it)."""
    return base64.b64encode(signing_key().sign(data)).decode()
