"""The signing key: from the environment as PEM or a base64 seed, or from a file; generated
under var/ only with DEBUG; refused (and a failing deploy check) without one in production."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import stat
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.exceptions import ImproperlyConfigured

from evidence import keys
from evidence.checks import signing_key_configured
from tests.evidence.conftest import ROOT, TEST_SEED


def pem_of(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def test_the_fingerprint_is_the_sha256_of_the_raw_public_key():
    raw = Ed25519PrivateKey.from_private_bytes(TEST_SEED).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert keys.fingerprint() == hashlib.sha256(raw).hexdigest()


@pytest.mark.parametrize("form", ["pem", "pem-escaped", "base64", "base64url"])
def test_the_key_is_read_in_each_documented_form(settings, form):
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())
    settings.EVIDENCE_SIGNING_KEY = {
        "pem": pem_of(key),
        "pem-escaped": pem_of(key).replace("\n", "\\n"),
        "base64": base64.b64encode(seed).decode(),
        "base64url": base64.urlsafe_b64encode(seed).decode().rstrip("="),
    }[form]
    assert keys.public_key_pem() == key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_the_key_is_read_from_a_file(settings, tmp_path):
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "signing.pem"
    path.write_text(pem_of(key))
    settings.EVIDENCE_SIGNING_KEY = ""
    settings.EVIDENCE_SIGNING_KEY_FILE = str(path)
    assert keys.signing_key().public_key().public_bytes_raw() == \
        key.public_key().public_bytes_raw()


@pytest.mark.parametrize("value", ["not a key", base64.b64encode(b"short").decode(),
                                   "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"])
def test_a_bad_key_is_refused_naming_the_variable_never_the_value(settings, value):
    settings.EVIDENCE_SIGNING_KEY = value
    with pytest.raises(ImproperlyConfigured, match="EVIDENCE_SIGNING_KEY") as caught:
        keys.signing_key()
    assert value not in str(caught.value)
    (error,) = signing_key_configured(None)
    assert error.id == "evidence.E002" and value not in error.msg


def test_another_algorithm_is_refused(settings):
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP256R1())
    settings.EVIDENCE_SIGNING_KEY = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    with pytest.raises(ImproperlyConfigured, match="not an Ed25519 key"):
        keys.signing_key()


def test_with_debug_a_key_is_generated_under_var_once(settings, tmp_path):
    settings.EVIDENCE_SIGNING_KEY = ""
    settings.DEBUG = True
    settings.VAR_DIR = tmp_path
    first = keys.fingerprint()
    path = tmp_path / keys.DEVELOPMENT_KEY_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    keys._load.cache_clear()
    assert keys.fingerprint() == first  # kept, not made again


def test_without_debug_and_without_a_key_signing_refuses(settings):
    settings.EVIDENCE_SIGNING_KEY = ""
    settings.DEBUG = False
    with pytest.raises(keys.MissingSigningKey, match="EVIDENCE_SIGNING_KEY"):
        keys.sign(b"anything")
    (error,) = signing_key_configured(None)
    assert error.id == "evidence.E001"


def manage_check(**env) -> subprocess.CompletedProcess:
    # Without the signing key, and without what other tests set for themselves (browser tests
    # allow async-unsafe calls, which the deploy check rightly refuses).
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith("EVIDENCE_SIGNING_KEY")
                   and name != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    environment.update(DEBUG="0", SECRET_KEY=secrets.token_urlsafe(50),
                       ALLOWED_HOSTS="flightdeck.example.com", **env)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120, check=False,
    )


def test_the_deploy_check_fails_without_a_signing_key():
    result = manage_check()
    assert result.returncode != 0
    assert "evidence.E001" in result.stderr


def test_the_deploy_check_passes_with_one():
    result = manage_check(EVIDENCE_SIGNING_KEY=base64.b64encode(os.urandom(32)).decode())
    assert "evidence.E" not in result.stderr + result.stdout
    assert result.returncode == 0, result.stderr
