"""`manage.py verify_evidence`: the keys it trusts and how it says no."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from evidence import keys
from tests.evidence.conftest import run_command


@pytest.fixture
def bundle(evidence_run, alice, build_bundle):
    return build_bundle(alice, run=str(evidence_run.uuid))[1]


def test_it_needs_a_key_to_trust(bundle):
    with pytest.raises(CommandError, match="name the key you trust"):
        call_command("verify_evidence", str(bundle))


def test_it_refuses_a_malformed_fingerprint(bundle):
    with pytest.raises(CommandError, match="--trusted-key 12ab: '12ab' is not a SHA-256"):
        call_command("verify_evidence", str(bundle), "--trusted-key", "12ab")


def test_this_servers_key_may_be_trusted_explicitly(bundle):
    verified, output = run_command(bundle, "--this-server")
    assert verified and "VALID: 1 runs" in output


def test_a_pem_file_is_a_trusted_key(bundle, tmp_path):
    pem = tmp_path / "key.pem"
    pem.write_bytes(keys.public_key_pem())
    assert run_command(bundle, "--trusted-key", pem)[0]


def test_another_key_fails_and_names_it(bundle):
    verified, output = run_command(bundle, "--trusted-key", "ab" * 32)
    assert not verified
    assert f"the bundle is signed by key {keys.fingerprint()}, which is not a trusted key" in output
    assert output.rstrip().splitlines()[-1].startswith("INVALID")


def test_a_missing_bundle_is_named(tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        call_command("verify_evidence", str(tmp_path / "nope.zip"), "--this-server")
