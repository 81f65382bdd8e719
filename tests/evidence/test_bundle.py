"""What a bundle holds: each run's events as stored, its metadata, commands, approvals with
every decision, the audit entries about them, digest proofs, a report and a CSV; redacted by
default without revealing any masked value; scopes of one run, a filter, a namespace."""

from __future__ import annotations

import csv
import hashlib
import io

import orjson
import pytest

from audit.models import AuditEntry
from evidence import digests
from history.models import Event, Run
from tests.builders import event
from tests.evidence.conftest import SECRET, SECRET_FIELD, members, run_standalone


def member(files: dict[str, bytes], suffix: str) -> bytes:
    (name,) = [name for name in files if name.endswith(suffix)]
    return files[name]


def event_lines(files: dict[str, bytes]) -> list[dict]:
    return [orjson.loads(line) for line in member(files, "events.jsonl").splitlines()]


def verifies(path, fingerprint) -> str:
    result = run_standalone(path, "--fingerprint", fingerprint)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_a_redacted_bundle_verifies_and_reveals_no_masked_value(
    evidence_run, alice, build_bundle, fingerprint
):
    export, path = build_bundle(alice, run=str(evidence_run.uuid))
    assert not export.raw
    files = members(path)
    for name, data in files.items():  # every file, decompressed, and the names
        for secret in (SECRET, SECRET_FIELD):
            assert secret.encode() not in data, name
            assert secret not in name
    assert SECRET.encode() not in path.read_bytes()
    redacted = event_lines(files)[3]
    assert redacted["event_id"] == 4 and redacted["redacted"] is True
    assert redacted["attributes"] is None and redacted["salt"] is None
    assert "[REDACTED:aws_access_key_id]" in redacted["masked_attributes"]
    assert {f["path"] for f in redacted["secret_findings"]} == {"/output/note", "/output/api_key"}
    # The digest in the stored header is what chains, so the chain still verifies.
    stored = Event.objects.get(run=evidence_run, event_id=4)
    assert redacted["header"] == stored.header and redacted["chain_hash"] == stored.chain_hash
    assert "12 events (1 redacted)" in verifies(path, fingerprint)


def test_events_are_the_stored_bytes_in_order(evidence_run, alice, build_bundle):
    _, path = build_bundle(alice, run=str(evidence_run.uuid))
    lines = event_lines(members(path))
    stored = list(Event.objects.filter(run=evidence_run).order_by("event_id"))
    assert [line["event_id"] for line in lines] == list(range(1, 13))
    for line, row in zip(lines, stored, strict=True):
        assert line["header"] == row.header and line["chain_hash"] == row.chain_hash
        if not line["redacted"]:
            assert (line["attributes"], line["salt"]) == (row.attributes, row.salt)


def test_a_raw_bundle_carries_the_values_and_still_verifies(
    evidence_run, ivy, build_bundle, fingerprint
):
    _export, path = build_bundle(ivy, run=str(evidence_run.uuid), raw=True, reason="incident 42")
    files = members(path)
    assert SECRET.encode() in member(files, "events.jsonl")
    manifest = orjson.loads(member(files, "manifest.json"))
    assert manifest["redacted"] is False and manifest["reason"] == "incident 42"
    assert manifest["created_by"] == "ivy"
    assert "0 redacted" in verifies(path, fingerprint) and "raw bundle" in verifies(
        path, fingerprint)


def test_run_metadata_and_the_manifest_agree_with_the_run(evidence_run, alice, build_bundle,
                                                          fingerprint):
    _export, path = build_bundle(alice, run=str(evidence_run.uuid))
    files = members(path)
    meta = orjson.loads(member(files, "run.json"))
    assert meta["head_hash"] == evidence_run.head_hash and meta["event_count"] == 12
    assert meta["status"] == "completed" and meta["chain_intact"] is True
    assert meta["agent"] == "support-bot" and meta["namespace"] == "acme"
    manifest = orjson.loads(member(files, "manifest.json"))
    assert manifest["signing_key"] == {"algorithm": "Ed25519", "fingerprint": fingerprint,
                                       "file": "public_key.pem"}
    assert manifest["scope"] == {"kind": "run", "run": str(evidence_run.uuid)}
    listed = {item["path"]: item for item in manifest["files"]}
    root = next(iter(files)).split("/")[0] + "/"
    for path_in_bundle, item in listed.items():
        assert hashlib.sha256(files[root + path_in_bundle]).hexdigest() == item["sha256"]
    assert set(listed) | {"manifest.json", "manifest.sig"} == {n[len(root):] for n in files}


def test_commands_and_approvals_come_with_who_when_and_why(evidence_run, alice, build_bundle):
    _, path = build_bundle(alice, run=str(evidence_run.uuid))
    files = members(path)
    commands = orjson.loads(member(files, "commands.json"))
    pause = next(c for c in commands if c["kind"] == "pause")
    assert (pause["requested_by"], pause["reason"]) == ("alice", "checking the refund")
    approve = next(c for c in commands if c["kind"] == "approve")
    (request,) = orjson.loads(member(files, "approvals.json"))
    assert approve["approval"] == request["id"]
    assert request["state"] == "approved" and request["action"] == "refund"
    assert [(d["user"], d["decision"], d["comment"]) for d in request["decisions"]] == [
        ("alice", "approve", "ok, small amount")
    ]
    assert request["decisions"][0]["created_at"]


def test_the_audit_entries_touching_the_run_are_included_with_their_hashes(
    evidence_run, alice, build_bundle, ingest, agent_token
):
    # Another run's entry must stay out.
    from interventions.commands import request_command

    ingest(agent_token, [event(1, "workflow.started", workflow_id="other")])
    other = Run.objects.get(workflow_id="other")
    request_command(other, alice, "pause", reason="elsewhere")
    _, path = build_bundle(alice, run=str(evidence_run.uuid))
    lines = [orjson.loads(line) for line in member(members(path), "entries.jsonl").splitlines()]
    actions = [orjson.loads(line["content"])["action"] for line in lines]
    assert actions == ["command.requested", "approval.decided"]
    for line in lines:
        stored = AuditEntry.objects.get(seq=line["seq"])
        assert (line["hash"], line["prev_hash"]) == (stored.hash, stored.prev_hash)
        assert hashlib.sha256(bytes.fromhex(line["prev_hash"]) + line["content"].encode()
                              ).hexdigest() == line["hash"]


def test_the_bundle_carries_the_digests_that_recorded_its_runs(evidence_run, alice,
                                                                build_bundle, fingerprint):
    digests.sign_digest()
    digests.sign_digest()  # records nothing new: the run did not change
    _, path = build_bundle(alice, run=str(evidence_run.uuid))
    files = members(path)
    manifest = orjson.loads(member(files, "manifest.json"))
    assert manifest["digests"] == [1] and manifest["runs"][0]["digests"] == [1]
    (proof,) = [orjson.loads(line) for line in member(files, "digest_proofs.jsonl").splitlines()]
    assert orjson.loads(proof["entry"])["head_hash"] == evidence_run.head_hash
    assert "1 signed digests, 1 digest proofs" in verifies(path, fingerprint)


def test_the_report_escapes_every_agent_string(ingest, agent_token, alice, build_bundle):
    hostile = "<img src=x onerror=alert(1)>"
    ingest(agent_token, [
        event(1, "workflow.started", workflow_id=f"wf-{hostile}", identity=hostile,
              attributes={"labels": {"team": hostile}}),
        event(2, "decision.made", workflow_id=f"wf-{hostile}", attributes={"why": hostile}),
    ])
    run = Run.objects.get(workflow_id=f"wf-{hostile}")
    _, path = build_bundle(alice, run=str(run.uuid))
    report = member(members(path), "report.html").decode()
    assert hostile not in report
    assert "&lt;img src=x onerror=alert(1)&gt;" in report
    assert "<script" not in report


def test_the_csv_in_the_bundle_neutralises_spreadsheet_formulas(ingest, agent_token, alice,
                                                                build_bundle):
    formula = "=HYPERLINK(\"http://evil.example\",\"click\")"
    ingest(agent_token, [event(1, "workflow.started", workflow_id=formula)])
    run = Run.objects.get(workflow_id=formula)
    _, path = build_bundle(alice, run=str(run.uuid))
    (row,) = list(csv.DictReader(io.StringIO(member(members(path), "runs.csv").decode())))
    assert row["workflow_id"] == "'" + formula
    assert row["uuid"] == str(run.uuid)


def test_a_filter_bundle_holds_exactly_the_runs_the_filter_matches(
    evidence_run, ingest, agent_token, foreign_agent_token, alice, build_bundle, fingerprint
):
    ingest(agent_token, [event(1, "workflow.started", workflow_id="still-running")])
    ingest(foreign_agent_token, [event(1, "workflow.started", workflow_id="globex-run"),
                                 event(2, "workflow.completed", workflow_id="globex-run")])
    export, path = build_bundle(alice, scope="filter", status="completed")
    assert export.run_uuids == [str(evidence_run.uuid)]  # globex's completed run is not hers
    manifest = orjson.loads(member(members(path), "manifest.json"))
    assert manifest["scope"] == {"kind": "filter", "query": "status=completed"}
    assert "VALID: 1 runs" in verifies(path, fingerprint)
    export, path = build_bundle(alice, scope="filter")
    assert len(export.run_uuids) == 2
    assert "VALID: 2 runs, 13 events" in verifies(path, fingerprint)


def test_a_namespace_bundle_holds_the_runs_active_in_the_time_range(
    ingest, agent_token, alice, build_bundle
):
    def run(workflow_id, start, end=None):
        events = [event(1, "workflow.started", workflow_id=workflow_id, time=start)]
        if end:
            events.append(event(2, "workflow.completed", workflow_id=workflow_id, time=end))
        ingest(agent_token, events)
        return str(Run.objects.get(workflow_id=workflow_id).uuid)

    before = run("before", "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z")
    across = run("across", "2026-01-01T23:00:00Z", "2026-01-02T01:00:00Z")
    inside = run("inside", "2026-01-02T05:00:00Z", "2026-01-02T06:00:00Z")
    open_ = run("open", "2026-01-01T12:00:00Z")
    after = run("after", "2026-01-03T00:00:00Z")
    export, _ = build_bundle(alice, scope="namespace", namespace="acme",
                             since="2026-01-02T00:00", until="2026-01-03T00:00")
    assert set(export.run_uuids) == {across, inside, open_}
    assert before not in export.run_uuids and after not in export.run_uuids


def test_a_run_with_a_gap_exports_and_verifies_up_to_the_gap(ingest, agent_token, alice,
                                                             build_bundle, fingerprint):
    ingest(agent_token, [event(1, "workflow.started"), event(2), event(3), event(5), event(6)])
    run = Run.objects.get(workflow_id="wf-1")
    assert run.contiguous_through == 3
    _, path = build_bundle(alice, run=str(run.uuid))
    lines = event_lines(members(path))
    assert [line["event_id"] for line in lines] == [1, 2, 3, 5, 6]
    assert lines[3]["chain_hash"] == ""
    assert "VALID: 1 runs, 5 events" in verifies(path, fingerprint)


def test_a_run_whose_stored_chain_is_broken_is_exported_and_flagged(
    evidence_run, alice, build_bundle, fingerprint
):
    """Someone changed a stored attribute without recomputing the chain: the bundle still
    says what the database holds, flags it, and fails verification at that event."""
    Event.objects.filter(run=evidence_run, event_id=7).update(attributes='{"changed":true}')
    _export, path = build_bundle(alice, run=str(evidence_run.uuid))
    files = members(path)
    meta = orjson.loads(member(files, "run.json"))
    assert meta["chain_intact"] is False
    assert meta["chain_problem"] == "event 7: attributes do not match their digest"
    assert "BROKEN: event 7" in member(files, "report.html").decode()
    exported = AuditEntry.objects.get(action="evidence.exported")
    assert exported.after["broken_chains"] == [str(evidence_run.uuid)]
    result = run_standalone(path, "--fingerprint", fingerprint)
    assert result.returncode == 1
    assert "event 7): attributes do not match the digest in the header" in result.stdout


def test_every_export_is_audited_with_what_was_handed_out(evidence_run, ivy, build_bundle):
    export, path = build_bundle(ivy, run=str(evidence_run.uuid), raw=True, reason="case 7")
    requested = AuditEntry.objects.get(action="evidence.export_requested")
    exported = AuditEntry.objects.get(action="evidence.exported")
    for entry in (requested, exported):
        assert entry.actor_label == "ivy" and entry.namespace_slug == "acme"
        assert (entry.object_type, entry.object_id) == ("evidence.export", str(export.id))
    assert requested.after["raw"] is True and requested.after["reason"] == "case 7"
    assert exported.after["bundle_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    manifest = member(members(path), "manifest.json")
    assert exported.after["manifest_sha256"] == hashlib.sha256(manifest).hexdigest()


@pytest.mark.parametrize("reason", ["", "   "])
def test_a_raw_export_needs_a_reason_through_the_page(evidence_run, as_ivy, reason):
    response = as_ivy.post("/evidence/export", {"scope": "run", "run": str(evidence_run.uuid),
                                                "payloads": "raw", "reason": reason})
    assert response.status_code == 400
    assert b"reason: say why the raw payloads are needed" in response.content
