"""Tampering is caught by both verifiers, the standalone one (run as its own process, with
Django unimportable) and `manage.py verify_evidence`, and each names what is wrong: the file,
the run, the event."""

from __future__ import annotations

import base64
import hashlib

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.utils import timezone

from evidence import digests
from evidence.models import DigestEntry, SignedDigest
from evidence.verify_bundle import fingerprint_of
from history import chain
from history.models import Event, Run
from history.verification import verify_run
from tests.evidence.conftest import members, rewrite, run_command, run_standalone


def verdicts(path, fingerprint: str, *extra: str) -> tuple[str, str]:
    """Both verifiers on one bundle: (standalone output, command output); both must fail."""
    standalone = run_standalone(path, "--fingerprint", fingerprint, *extra)
    verified, command = run_command(path, "--trusted-key", fingerprint, *extra)
    assert standalone.returncode == 1, standalone.stdout + standalone.stderr
    assert not verified, command
    return standalone.stdout, command


def events_name(run: Run) -> str:
    return f"runs/{run.uuid}/events.jsonl"


def change_event_lines(change):
    """A rewrite() change that passes the events file's lines through `change(lines)`."""

    def apply(name, data):
        if name.endswith("events.jsonl"):
            lines = data.decode().splitlines()
            return name, ("\n".join(change(lines)) + "\n").encode()
        return name, data

    return apply


@pytest.fixture
def bundle(evidence_run, alice, build_bundle):
    digests.sign_digest()
    _, path = build_bundle(alice, run=str(evidence_run.uuid))
    return path


def test_an_untouched_bundle_verifies_with_both(bundle, fingerprint):
    standalone = run_standalone(bundle, "--fingerprint", fingerprint)
    assert standalone.returncode == 0, standalone.stdout
    assert standalone.stdout.splitlines()[-1].startswith("VALID: 1 runs, 12 events (1 redacted)")
    verified, output = run_command(bundle, "--trusted-key", fingerprint)
    assert verified, output


def test_a_trusted_public_key_file_works_as_well_as_a_fingerprint(bundle, tmp_path):
    pem = members(bundle)[next(n for n in members(bundle) if n.endswith("public_key.pem"))]
    key_file = tmp_path / "pinned.pem"
    key_file.write_bytes(pem)
    assert run_standalone(bundle, "--public-key", key_file).returncode == 0
    assert run_command(bundle, "--trusted-key", key_file)[0]


def test_a_byte_changed_in_an_events_file(bundle, evidence_run, fingerprint, tmp_path):
    def flip(lines):
        lines[6] = lines[6].replace("refund", "refunf", 1)  # event 7's attributes
        return lines

    tampered = rewrite(bundle, tmp_path / "t.zip", change_event_lines(flip))
    for output in verdicts(tampered, fingerprint):
        assert f"{events_name(evidence_run)}: SHA-256 is" in output
        assert f"{events_name(evidence_run)} line 7 (run {evidence_run.uuid} (wf-ev / run-1), " \
               "event 7): attributes do not match the digest in the header" in output


def test_a_byte_changed_in_a_header(bundle, evidence_run, fingerprint, tmp_path):
    def flip(lines):
        lines[8] = lines[8].replace("activity.completed", "activity.complete!", 1)  # event 9
        return lines

    tampered = rewrite(bundle, tmp_path / "t.zip", change_event_lines(flip))
    for output in verdicts(tampered, fingerprint):
        assert "line 9" in output and "event 9): chain hash does not match" in output


def test_an_event_removed(bundle, evidence_run, fingerprint, tmp_path):
    tampered = rewrite(bundle, tmp_path / "t.zip",
                       change_event_lines(lambda lines: lines[:4] + lines[5:]))
    for output in verdicts(tampered, fingerprint):
        assert "line 5 (run" in output and "event 6): event 5 missing from the chain" in output
        assert "holds 11 events, run.json says 12" in output


def test_the_last_event_removed(bundle, evidence_run, fingerprint, tmp_path):
    tampered = rewrite(bundle, tmp_path / "t.zip", change_event_lines(lambda lines: lines[:-1]))
    for output in verdicts(tampered, fingerprint):
        assert "the chain reaches event 11, run.json says it runs through event 12" in output


def test_two_events_swapped(bundle, evidence_run, fingerprint, tmp_path):
    def swap(lines):
        lines[4], lines[5] = lines[5], lines[4]
        return lines

    tampered = rewrite(bundle, tmp_path / "t.zip", change_event_lines(swap))
    for output in verdicts(tampered, fingerprint):
        assert "line 6 (run" in output
        assert "event 5): event 5 comes after event 6: out of order" in output


def test_the_manifest_edited(bundle, fingerprint, tmp_path):
    def edit(name, data):
        if name.endswith("manifest.json"):
            return name, data.replace(b'"created_by": "alice"', b'"created_by": "bob"')
        return name, data

    tampered = rewrite(bundle, tmp_path / "t.zip", edit)
    for output in verdicts(tampered, fingerprint):
        assert "manifest.sig: the signature over manifest.json does not verify" in output


def test_a_file_added_that_the_manifest_does_not_list(bundle, fingerprint, tmp_path):
    root = next(iter(members(bundle))).split("/")[0]
    original = members(bundle)

    def add(name, data):
        return name, data

    tampered = rewrite(bundle, tmp_path / "t.zip", add)
    import zipfile

    with zipfile.ZipFile(tampered, "a") as archive:
        archive.writestr(f"{root}/runs/extra.txt", b"planted")
    assert len(original) + 1 == len(members(tampered))
    for output in verdicts(tampered, fingerprint):
        assert "runs/extra.txt: is in the bundle but not in the manifest" in output


def resign(path, target, change, key: Ed25519PrivateKey):
    """What someone without Flightdeck's key can do: change files, recompute every hash in
    the manifest, put their own public key in and sign with it."""
    files = members(path)
    root = next(iter(files)).split("/")[0] + "/"
    files = {name: change(name, data)[1] for name, data in files.items()}
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    files[root + "public_key.pem"] = pem
    manifest = orjson.loads(files[root + "manifest.json"])
    manifest["signing_key"]["fingerprint"] = fingerprint_of(key.public_key())
    for item in manifest["files"]:
        data = files[root + item["path"]]
        item["sha256"], item["size"] = hashlib.sha256(data).hexdigest(), len(data)
    files[root + "manifest.json"] = orjson.dumps(manifest, option=orjson.OPT_INDENT_2)
    files[root + "manifest.sig"] = base64.b64encode(key.sign(files[root + "manifest.json"]))
    rewrite(path, target, lambda name, data: (name, files[name]))
    return target


def test_a_bundle_re_signed_with_another_key(bundle, fingerprint, tmp_path):
    other = Ed25519PrivateKey.generate()

    def lie(name, data):
        return name, data.replace(b"ok, small amount", b"approved by the CFO")

    tampered = resign(bundle, tmp_path / "t.zip", lie, other)
    for output in verdicts(tampered, fingerprint):
        assert f"manifest.sig: the bundle is signed by key {fingerprint_of(other.public_key())}, " \
               "which is not a trusted key" in output
    # Trusting the forger's key would pass its manifest; the digests, signed by the real key,
    # still do not verify under it.
    forged = run_standalone(tampered, "--fingerprint", fingerprint_of(other.public_key()))
    assert "digests/00000001.json: is signed by key" in forged.stdout


def rewrite_history_consistently(run: Run, event_id: int, attributes: dict) -> None:
    """What someone who controls the database can do: change an event's attributes and
    recompute its digest, header, every later chain hash and the run's head, so that the
    stored chain checks out again."""
    events = list(Event.objects.filter(run=run).order_by("event_id"))
    previous = chain.GENESIS
    for stored in events:
        if stored.event_id == event_id:
            stored.attributes = chain.canonical(attributes).decode()
            fields = orjson.loads(stored.header)
            fields["attributes_digest"] = chain.attributes_digest(
                stored.salt, stored.attributes.encode()
            )
            stored.header = chain.canonical(fields).decode()
        previous = chain.link(previous, stored.header.encode())
        stored.chain_hash = previous
    Event.objects.bulk_update(events, ["attributes", "header", "chain_hash"])
    Run.objects.filter(pk=run.pk).update(head_hash=previous)


def test_events_rewritten_consistently_in_the_database_after_a_digest(
    evidence_run, alice, build_bundle, fingerprint
):
    digests.sign_digest()
    rewrite_history_consistently(evidence_run, 9, {"output": {"ok": False}})
    evidence_run.refresh_from_db()
    assert verify_run(evidence_run) == []  # the stored chain alone no longer shows it
    _, path = build_bundle(alice, run=str(evidence_run.uuid))
    for output in verdicts(path, fingerprint):
        assert f"digest_proofs.jsonl line 1 (run {evidence_run.uuid}, digest 1 of" in output
        assert "but the bundle's chain there is" in output
        assert "events 1…12 were rewritten after the digest" in output


def test_a_rewrite_is_still_caught_after_a_later_digest_recorded_it(
    evidence_run, alice, build_bundle, fingerprint
):
    """Had the rewrite also touched updated_at, the next digest records the rewritten state;
    the bundle carries every digest that recorded the run, and the first still disagrees."""
    digests.sign_digest()
    rewrite_history_consistently(evidence_run, 9, {"output": {"ok": False}})
    Run.objects.filter(pk=evidence_run.pk).update(updated_at=timezone.now())
    assert digests.sign_digest().run_count == 1
    _, path = build_bundle(alice, run=str(evidence_run.uuid))
    standalone, command = verdicts(path, fingerprint)
    for output in (standalone, command):
        assert "digest 1 of" in output and "rewritten after the digest" in output
        assert "digest 2 of" not in output


def test_digests_kept_outside_catch_a_rewrite_whose_digests_were_deleted_from_the_database(
    evidence_run, alice, build_bundle, fingerprint, settings
):
    digests.sign_digest()
    assert digests.publish_pending() == 1
    rewrite_history_consistently(evidence_run, 3, {"activity_type": "get_customer"})
    DigestEntry.objects.all().delete()
    SignedDigest.objects.all().delete()
    _, path = build_bundle(alice, run=str(evidence_run.uuid))
    alone = run_standalone(path, "--fingerprint", fingerprint)
    assert alone.returncode == 0  # nothing in the bundle contradicts it ...
    assert "no signed digest covers this run" in alone.stdout
    folder = settings.EVIDENCE_DIGEST_DIR
    for output in verdicts(path, fingerprint, "--digest-dir", folder):  # ... the copies do
        assert "digest-00000001.entries.jsonl line 1" in output
        assert "were rewritten after the digest" in output
