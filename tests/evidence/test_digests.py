"""Signed digests: what each records, their chain, their publication outside the database,
and the Merkle proofs that let a bundle prove one run's entry."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings as django_settings
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from audit.log import record
from audit.models import AuditHead
from evidence import digests
from evidence.merkle import MerkleTree
from evidence.models import DigestEntry, SignedDigest
from evidence.verify_bundle import (
    GENESIS,
    _merkle_root,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
)
from history.models import Run
from tests.builders import event
from tests.evidence.conftest import TEST_SEED


def entries_of(digest: SignedDigest) -> list[dict]:
    return [orjson.loads(e.entry) for e in digest.entries.order_by("position")]


@pytest.fixture
def two_runs(ingest, agent_token) -> list[Run]:
    ingest(agent_token, [event(1, "workflow.started", workflow_id="a"), event(2, workflow_id="a")])
    ingest(agent_token, [event(1, "workflow.started", workflow_id="b")])
    return list(Run.objects.order_by("workflow_id"))


def test_the_first_digest_records_every_run_and_later_ones_only_what_changed(
    two_runs, ingest, agent_token
):
    first = digests.sign_digest()
    assert first.seq == 1 and first.run_count == 2
    recorded = entries_of(first)
    assert [e["run"] for e in recorded] == sorted(str(run.uuid) for run in two_runs)
    a = next(e for e in recorded if e["workflow_id"] == "a")
    assert a == {
        "run": str(two_runs[0].uuid), "namespace": "acme", "workflow_id": "a", "run_id": "run-1",
        "event_count": 2, "last_event_id": 2, "contiguous_through": 2,
        "head_hash": two_runs[0].head_hash,
    }
    assert digests.sign_digest().run_count == 0  # nothing changed
    ingest(agent_token, [event(2, workflow_id="b")])
    third = digests.sign_digest()
    assert [e["workflow_id"] for e in entries_of(third)] == ["b"]
    assert entries_of(third)[0]["event_count"] == 2


def test_digests_are_signed_and_chained(two_runs):
    public = Ed25519PrivateKey.from_private_bytes(TEST_SEED).public_key()
    first, second = digests.sign_digest(), digests.sign_digest()
    for digest in (first, second):
        public.verify(base64.b64decode(digest.signature), digest.body.encode())
        assert digest.sha256 == hashlib.sha256(digest.body.encode()).hexdigest()
    assert json.loads(first.body)["previous_sha256"] == GENESIS
    assert json.loads(second.body)["previous_sha256"] == first.sha256
    body = json.loads(first.body)
    assert body["format"] == "flightdeck-digest/1" and body["seq"] == 1
    leaves = [leaf_hash(e.entry.encode()) for e in first.entries.order_by("position")]
    assert body["runs"] == {"count": 2, "root": _merkle_root(leaves).hex()}


def test_a_digest_records_the_audit_chain_head(two_runs, alice):
    record("test.action", actor=alice)
    head = AuditHead.objects.get(pk=1)
    body = json.loads(digests.sign_digest().body)
    assert body["audit"] == {"seq": head.seq, "hash": head.hash}


def test_a_second_signer_of_the_same_number_gives_way(two_runs, monkeypatch):
    """Two beat schedulers by mistake: the unique sequence number lets only one digest 1."""
    real = digests.changed_runs

    def racing(previous):
        SignedDigest.objects.create(
            seq=1, created_at=timezone.now(), body="{}", signature="x", sha256="0" * 64,
            previous_sha256=GENESIS, key_fingerprint="f", run_count=0, audit_hash=GENESIS,
        )
        yield from real(previous)

    monkeypatch.setattr(digests, "changed_runs", racing)
    assert digests.sign_digest() is None
    assert SignedDigest.objects.count() == 1 and not DigestEntry.objects.exists()


def test_digests_are_written_to_the_folder_once(two_runs, settings):
    digest = digests.sign_digest()
    assert digests.publish_pending() == 1
    folder = Path(settings.EVIDENCE_DIGEST_DIR)
    assert (folder / "digest-00000001.json").read_bytes() == digest.body.encode()
    assert (folder / "digest-00000001.sig").read_text().strip() == digest.signature
    lines = (folder / "digest-00000001.entries.jsonl").read_bytes().splitlines()
    assert _merkle_root([leaf_hash(line) for line in lines]).hex() == \
        json.loads(digest.body)["runs"]["root"]
    digest.refresh_from_db()
    assert digest.written_at is not None and digest.written_to.endswith("digest-00000001.json")
    assert digests.publish_pending() == 0  # nothing left to publish


def test_a_digest_file_with_other_content_is_never_overwritten(two_runs, settings):
    """The database was restored from an old backup and numbers start again: the file that
    holds the first digest 1 is evidence, and stays."""
    folder = Path(settings.EVIDENCE_DIGEST_DIR)
    folder.mkdir(parents=True)
    (folder / "digest-00000001.json").write_bytes(b'{"an": "earlier digest 1"}')
    digest = digests.sign_digest()
    assert digests.publish_pending() == 0
    digest.refresh_from_db()
    assert digest.written_at is None
    assert "digest-00000001.json exists with other content; not overwritten" in \
        digest.publish_error
    assert (folder / "digest-00000001.json").read_bytes() == b'{"an": "earlier digest 1"}'


class Receiver:
    """A digest webhook on 127.0.0.1 that answers `status` and keeps what it was sent."""

    def __init__(self, status: int = 200):
        self.status = status
        self.received: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(json.loads(body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/digests"


@pytest.fixture
def receiver(settings):
    receiver = Receiver()
    settings.EVIDENCE_DIGEST_WEBHOOK_URL = receiver.url
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def test_digests_are_sent_to_the_webhook_and_retried_until_it_takes_them(two_runs, receiver):
    receiver.status = 503
    digest = digests.sign_digest()
    assert digests.publish_pending() == 0
    digest.refresh_from_db()
    assert digest.webhook_sent_at is None and "HTTP 503" in digest.publish_error
    assert digest.written_at is not None  # the folder took it meanwhile
    receiver.status = 200
    assert digests.publish_pending() == 1
    digest.refresh_from_db()
    assert digest.webhook_sent_at is not None and digest.publish_error == ""
    sent = receiver.received[-1]
    assert sent["digest"] == digest.body and sent["signature"] == digest.signature
    assert sent["entries"] == [e.entry for e in digest.entries.order_by("position")]


def test_a_webhook_to_a_private_address_is_refused(two_runs, settings):
    settings.EVIDENCE_DIGEST_WEBHOOK_URL = "http://10.0.0.1/digests"
    settings.WEBHOOK_ALLOWED_NETWORKS = []
    digest = digests.sign_digest()
    digests.publish_pending()
    digest.refresh_from_db()
    assert digest.webhook_sent_at is None and "private" in digest.publish_error


def test_a_deleted_run_stays_proven_by_its_digests(ingest, agent_token, settings):
    ingest(agent_token, [event(1, "workflow.started", workflow_id="gone")])
    run = Run.objects.get(workflow_id="gone")
    head, uuid = run.head_hash, run.uuid
    digests.sign_digest()
    digests.publish_pending()
    run.delete()
    (entry,) = DigestEntry.objects.filter(run_uuid=uuid)
    assert entry.head_hash == head
    published = Path(settings.EVIDENCE_DIGEST_DIR, "digest-00000001.entries.jsonl").read_text()
    assert json.loads(published.splitlines()[0])["head_hash"] == head


def test_beat_signs_a_digest_hourly_on_the_exports_queue():
    schedule = django_settings.CELERY_BEAT_SCHEDULE["sign-evidence-digest"]
    assert schedule["task"] == "evidence.sign_digest" and schedule["schedule"] == 3600.0
    assert django_settings.CELERY_TASK_ROUTES["evidence.sign_digest"] == {"queue": "exports"}
    assert django_settings.CELERY_TASK_ROUTES["evidence.build_export"] == {"queue": "exports"}


# --- Merkle trees -----------------------------------------------------------------------------


def rfc_root(leaves: list[bytes]) -> bytes:
    """RFC 9162's definition, recursively: split at the largest power of two below n."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(rfc_root(leaves[:k]), rfc_root(leaves[k:]))


@given(st.integers(min_value=1, max_value=70))
def test_the_tree_is_rfc_9162s_and_every_proof_leads_to_its_root(size):
    entries = [f"entry {i}".encode() for i in range(size)]
    tree = MerkleTree(entries)
    assert tree.root == rfc_root([leaf_hash(e) for e in entries])
    for index, entry in enumerate(entries):
        proof = tree.inclusion_proof(index)
        assert root_from_inclusion_proof(index, size, leaf_hash(entry), proof) == tree.root
        assert root_from_inclusion_proof(index, size, leaf_hash(b"forged"), proof) != tree.root


@given(st.integers(min_value=2, max_value=40), st.data())
def test_a_proof_for_another_position_or_size_fails(size, data):
    entries = [bytes([i]) for i in range(size)]
    tree = MerkleTree(entries)
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    other = data.draw(st.integers(min_value=0, max_value=size - 1).filter(lambda i: i != index))
    proof = tree.inclusion_proof(index)
    try:
        moved = root_from_inclusion_proof(other, size, leaf_hash(entries[index]), proof)
    except ValueError:
        moved = None
    assert moved != tree.root


def test_an_empty_digest_has_the_empty_root():
    assert MerkleTree([]).root == hashlib.sha256(b"").digest() == _merkle_root([])
