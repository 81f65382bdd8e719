"""Write an evidence bundle: a zip streamed run by run and event by event, signed at the end.

Memory stays flat whatever the size of a run: events are read with a database cursor in chunks
and written straight into the zip entry, hashed as they pass; the report's timeline keeps only
the first and last few hundred events of each run. docs/evidence.md defines every file.
"""

from __future__ import annotations

import hashlib
import tempfile
import zipfile
from collections import deque
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import orjson
from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone

from audit.models import AuditEntry, AuditHead
from evidence import keys
from evidence.digests import utc_text
from evidence.merkle import MerkleTree
from evidence.models import DigestEntry, EvidenceExport, SignedDigest
from evidence.scope import ExportScope
from evidence.spreadsheet import csv_rows
from evidence.verify_bundle import BUNDLE_FORMAT, GENESIS, MANIFEST, PUBLIC_KEY, SIGNATURE
from history import chain
from history.models import Event, Run
from history.secrets import scan
from interventions.models import ApprovalRequest, Command

EVENT_CHUNK = 2000
RUN_CHUNK = 200
FLUSH_BYTES = 1 << 20
REPORT_HEAD = REPORT_TAIL = 300  # events of each run shown in the report's timeline
SUMMARY_CHARS = 160
EVENT_COLUMNS = (
    "event_id", "type", "time", "time_text", "identity", "header", "attributes",
    "masked_attributes", "salt", "chain_hash", "secret_findings", "received_at",
)
JSON_OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
RUN_CSV_HEADER = [
    "uuid", "namespace", "agent", "workflow_id", "run_id", "workflow_type", "status",
    "started_at", "closed_at", "event_count", "contiguous_through", "head_hash", "chain_intact",
]

Progress = Callable[[int, int], None]  # (runs done, events done)


@dataclass
class BundleResult:
    manifest_sha256: str
    key_fingerprint: str
    runs: int
    events: int
    broken_runs: list[str] = field(default_factory=list)


class _HashingWriter:
    """A zip entry that counts and hashes what passes, writing in blocks of about 1 MiB."""

    def __init__(self, stream):
        self.stream = stream
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.buffer = bytearray()

    def write(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.sha256.update(self.buffer)
            self.size += len(self.buffer)
            self.stream.write(self.buffer)
            self.buffer = bytearray()


class BundleWriter:
    """The zip and the list of files the manifest will name."""

    def __init__(self, archive: zipfile.ZipFile, root: str):
        self.archive = archive
        self.root = root
        self.files: list[dict] = []

    @contextmanager
    def open(self, path: str):
        with self.archive.open(self.root + path, "w", force_zip64=True) as stream:
            writer = _HashingWriter(stream)
            yield writer
            writer.flush()
        self.files.append({"path": path, "sha256": writer.sha256.hexdigest(),
                           "size": writer.size})

    def add(self, path: str, data: bytes, *, listed: bool = True) -> None:
        if listed:
            with self.open(path) as writer:
                writer.write(data)
        else:
            self.archive.writestr(self.root + path, data)


@dataclass
class _RunPass:
    """What one pass over a run's events learned, for run.json and the report."""

    count: int = 0
    chain_problem: str | None = None
    head: list = field(default_factory=list)
    tail: deque = field(default_factory=lambda: deque(maxlen=REPORT_TAIL))


def write_bundle(export: EvidenceExport, path, progress: Progress | None = None) -> BundleResult:
    """Write the bundle of `export` to the file `path`."""
    progress = progress or (lambda runs, events: None)
    fingerprint = keys.fingerprint()
    root = f"flightdeck-evidence-{export.id}/"
    created_at = timezone.now()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive, \
            tempfile.TemporaryFile() as report_body:
        writer = BundleWriter(archive, root)
        writer.add(PUBLIC_KEY, keys.public_key_pem())
        trees = _DigestTrees()
        audit_seqs: set[int] = set()
        run_rows, listed_runs, broken = [], [], []
        done_events = 0
        for chunk in _run_chunks(export.run_uuids):
            for run in chunk:
                runs_done, before = len(listed_runs), done_events
                exported = _write_run(
                    writer, run, export.raw, trees, audit_seqs,
                    lambda n, runs=runs_done, before=before: progress(runs, before + n),
                )
                done_events += exported["event_count"]
                listed_runs.append(exported["manifest"])
                run_rows.append(exported["csv"])
                if exported["manifest"]["chain_intact"] is False:
                    broken.append(str(run.uuid))
                report_body.write(exported["report"].encode())
                progress(len(listed_runs), done_events)
        audit_head = _write_audit(writer, audit_seqs)
        for digest in trees.used():
            writer.add(f"digests/{digest.seq:08d}.json", digest.body.encode())
            writer.add(f"digests/{digest.seq:08d}.sig", digest.signature.encode() + b"\n")
        with writer.open("runs.csv") as out:
            for line in csv_rows(RUN_CSV_HEADER, run_rows):
                out.write(line.encode())
        context = {
            "export": export, "created_at": created_at, "fingerprint": fingerprint,
            "scope": ExportScope(export.kind, export.scope).describe(), "runs": listed_runs,
            "events": done_events, "broken": broken, "audit_count": len(audit_seqs),
            "digests": [d.seq for d in trees.used()],
        }
        with writer.open("report.html") as out:
            out.write(render_to_string("evidence/bundle/report.html#head", context).encode())
            report_body.seek(0)
            while block := report_body.read(FLUSH_BYTES):
                out.write(block)
            out.write(render_to_string("evidence/bundle/report.html#foot", context).encode())
        writer.add("README.txt", render_to_string("evidence/bundle/README.txt", context).encode())
        manifest = orjson.dumps({
            "format": BUNDLE_FORMAT,
            "bundle_id": str(export.id),
            "created_at": utc_text(created_at),
            "created_by": export.requested_by_label,
            "redacted": not export.raw,
            "reason": export.reason,
            "scope": {"kind": export.kind, **export.scope},
            "signing_key": {"algorithm": "Ed25519", "fingerprint": fingerprint,
                            "file": PUBLIC_KEY},
            "runs": listed_runs,
            "digests": [d.seq for d in trees.used()],
            "audit": {"entries": len(audit_seqs), **audit_head},
            "files": writer.files,
        }, option=JSON_OPTIONS)
        writer.add(MANIFEST, manifest, listed=False)
        writer.add(SIGNATURE, keys.sign(manifest).encode() + b"\n", listed=False)
    return BundleResult(hashlib.sha256(manifest).hexdigest(), fingerprint, len(listed_runs),
                        done_events, broken)


def _run_chunks(uuids: list[str]):
    """The export's runs, a few hundred at a time, in the order they were listed."""
    for start in range(0, len(uuids), RUN_CHUNK):
        wanted = uuids[start:start + RUN_CHUNK]
        found = {
            str(run.uuid): run
            for run in Run.objects.filter(uuid__in=wanted).select_related(
                "namespace", "agent", "agent__owner_user", "agent__owner_group"
            )
        }
        missing = [uuid for uuid in wanted if uuid not in found]
        if missing:
            raise LookupError(f"run {missing[0]} no longer exists")
        yield [found[uuid] for uuid in wanted]


def _write_run(writer: BundleWriter, run: Run, raw: bool, trees: _DigestTrees,
               audit_seqs: set[int], progress: Callable[[int], None]) -> dict:
    folder = f"runs/{run.uuid}/"
    with writer.open(folder + "events.jsonl") as out:
        passed = _write_events(out, run, raw, progress)
    commands = _commands(run)
    approvals = _approvals(run)
    if not raw:
        # Ingest masks the agent's text it stores on an approval request; the free text beside
        # it (an operator's reason or signal payload, a reviewer's comment) is masked here too.
        commands, approvals = _masked(commands), _masked(approvals)
    audit = _audit_entries(run, commands, approvals)
    audit_seqs.update(entry["seq"] for entry in audit)
    proofs = trees.proofs_for(run)
    meta = {
        "uuid": str(run.uuid),
        "namespace": run.namespace.slug,
        "agent": run.agent.name,
        "agent_owner": str(run.agent.owner) if run.agent.owner else None,
        "workflow_id": run.workflow_id,
        "run_id": run.run_id,
        "workflow_type": run.workflow_type,
        "status": run.status,
        "started_at": run.started_at,
        "closed_at": run.closed_at,
        "event_count": passed.count,
        "last_event_id": run.last_event_id,
        "contiguous_through": run.contiguous_through,
        "head_hash": run.head_hash,
        "labels": run.labels,
        "events_with_secrets": run.events_with_secrets,
        "chain_intact": passed.chain_problem is None,
        "chain_problem": passed.chain_problem,
    }
    writer.add(folder + "run.json", orjson.dumps(meta, option=JSON_OPTIONS))
    writer.add(folder + "commands.json", orjson.dumps(commands, option=JSON_OPTIONS))
    writer.add(folder + "approvals.json", orjson.dumps(approvals, option=JSON_OPTIONS))
    writer.add(folder + "digest_proofs.jsonl",
               b"".join(orjson.dumps(proof) + b"\n" for proof in proofs))
    listed = {name: meta[name] for name in (
        "uuid", "namespace", "workflow_id", "run_id", "event_count", "last_event_id",
        "contiguous_through", "head_hash", "chain_intact")}
    listed["digests"] = sorted({proof["digest_seq"] for proof in proofs})
    report = render_to_string("evidence/bundle/report.html#run", {
        "meta": meta, "commands": commands, "approvals": approvals, "audit": audit,
        "timeline": _timeline(passed, commands, approvals),
        "omitted": max(0, passed.count - len(passed.head) - len(passed.tail)),
        "proofs": proofs, "raw": raw,
    })
    csv = [meta["uuid"], meta["namespace"], meta["agent"], run.workflow_id, run.run_id,
           run.workflow_type, run.status, utc_text(run.started_at),
           utc_text(run.closed_at) if run.closed_at else "", passed.count,
           run.contiguous_through, run.head_hash, meta["chain_intact"]]
    return {"manifest": listed, "csv": csv, "report": report, "event_count": passed.count}


def _write_events(out: _HashingWriter, run: Run, raw: bool, progress) -> _RunPass:
    """Stream the run's events as JSON lines and re-check its chain on the way."""
    passed = _RunPass()
    previous = GENESIS
    rows = (
        Event.objects.filter(run=run).order_by("event_id").values_list(*EVENT_COLUMNS)
        .iterator(chunk_size=EVENT_CHUNK)
    )
    for (event_id, event_type, time, time_text, identity, header, attributes, masked, salt,
         chain_hash, findings, received_at) in rows:
        redact = not raw and bool(findings)
        line = {"event_id": event_id, "header": header, "chain_hash": chain_hash,
                "redacted": redact}
        if redact:
            # The digest in the header still chains; the value, and the salt that would let
            # someone test guesses against the digest, stay out.
            line.update(attributes=None, salt=None, masked_attributes=masked)
        else:
            line.update(attributes=attributes, salt=salt)
        line["secret_findings"] = findings
        line["received_at"] = received_at
        out.write(orjson.dumps(line) + b"\n")
        passed.count += 1
        if passed.chain_problem is None and event_id <= run.contiguous_through:
            previous = _check_link(passed, previous, event_id, header, attributes, salt,
                                   chain_hash)
        shown = masked if redact else attributes
        row = (event_id, event_type, time, time_text, identity, shown[:SUMMARY_CHARS],
               len(shown) > SUMMARY_CHARS)
        if len(passed.head) < REPORT_HEAD:
            passed.head.append(row)
        else:
            passed.tail.append(row)
        if passed.count % EVENT_CHUNK == 0:
            progress(passed.count)
    if passed.chain_problem is None and run.contiguous_through and previous != run.head_hash:
        passed.chain_problem = "the chain's head does not match the run's head hash"
    return passed


def _check_link(passed: _RunPass, previous: str, event_id: int, header: str, attributes: str,
                salt: str, chain_hash: str) -> str:
    if event_id != passed.count:
        passed.chain_problem = f"event {passed.count} is missing from the chain"
        return previous
    link = chain.link(previous, header.encode())
    if link != chain_hash:
        passed.chain_problem = f"event {event_id}: chain hash does not match"
        return link
    try:
        digest = chain.attributes_digest(salt, attributes.encode())
    except ValueError:  # a stored salt that is not hex: tampered, listed, never a failed export
        passed.chain_problem = f"event {event_id}: its salt is not hex"
        return link
    if f'"attributes_digest":"{digest}"' not in header:
        passed.chain_problem = f"event {event_id}: attributes do not match their digest"
    return link


def _masked(records: list[dict]) -> list[dict]:
    _, masked = scan({"records": records})
    return records if masked is None else masked["records"]


def _user_name(user) -> str | None:
    return user.get_username() if user is not None else None


def _commands(run: Run) -> list[dict]:
    return [
        {
            "id": str(c.id), "kind": c.kind, "signal_name": c.signal_name, "payload": c.payload,
            "reason": c.reason, "requested_by": _user_name(c.requested_by),
            "approval": str(c.approval_id) if c.approval_id else None,
            "connector": c.connector, "state": c.state, "created_at": c.created_at,
            "dispatched_at": c.dispatched_at, "delivered_at": c.delivered_at,
            "finished_at": c.finished_at, "attempts": c.attempts, "last_error": c.last_error,
            "ack_detail": c.ack_detail,
        }
        for c in Command.objects.for_run(run).select_related("requested_by")
    ]


def _approvals(run: Run) -> list[dict]:
    requests = (
        ApprovalRequest.objects.filter(run=run).order_by("created_at")
        .prefetch_related("decisions__user")
    )
    return [
        {
            "id": str(r.id), "request_id": r.request_id, "event_id": r.event_id,
            "action": r.action, "arguments": r.arguments, "summary": r.summary,
            "on_behalf_of": r.on_behalf_of, "asked_risk": r.asked_risk,
            "asked_approvals": r.asked_approvals, "risk": r.risk,
            "required_approvals": r.required_approvals, "state": r.state,
            "created_at": r.created_at, "deadline": r.deadline, "decided_at": r.decided_at,
            "claimed_outcome": r.claimed_outcome, "claim_event_id": r.claim_event_id,
            "claim_mismatch": r.claim_mismatch,
            "decisions": [
                {"user": _user_name(d.user), "decision": d.decision, "comment": d.comment,
                 "created_at": d.created_at}
                for d in r.decisions.all()
            ],
        }
        for r in requests
    ]


def _audit_entries(run: Run, commands: list[dict], approvals: list[dict]) -> list[dict]:
    """Audit entries about the run, its commands and its approval requests."""
    touching = Q(object_type="history.run", object_id__in=[str(run.pk), str(run.uuid)])
    if commands:
        touching |= Q(object_type="interventions.command",
                      object_id__in=[c["id"] for c in commands])
    if approvals:
        touching |= Q(object_type="interventions.approvalrequest",
                      object_id__in=[a["id"] for a in approvals])
    return list(
        AuditEntry.objects.filter(touching).order_by("seq")
        .values("seq", "time", "actor_label", "action", "object_type", "object_repr", "after")
    )


def _write_audit(writer: BundleWriter, seqs: set[int]) -> dict:
    """audit/entries.jsonl: each entry's content as the exact bytes its hash covers."""
    ordered = sorted(seqs)
    with writer.open("audit/entries.jsonl") as out:
        for start in range(0, len(ordered), 500):
            for entry in AuditEntry.objects.filter(seq__in=ordered[start:start + 500]).order_by(
                "seq"
            ):
                content = orjson.dumps(entry.content(), option=orjson.OPT_SORT_KEYS)
                out.write(orjson.dumps({
                    "seq": entry.seq, "prev_hash": entry.prev_hash, "hash": entry.hash,
                    "content": content.decode(),
                }) + b"\n")
    head = AuditHead.objects.filter(pk=1).values_list("seq", "hash").first() or (0, GENESIS)
    return {"head_seq": head[0], "head_hash": head[1]}


def _timeline(passed: _RunPass, commands: list[dict], approvals: list[dict]) -> list[dict]:
    """The report's timeline: the events kept, with commands and decisions, by time."""
    items = [
        {"time": time, "row": "event", "event_id": event_id, "type": event_type,
         "time_text": time_text, "identity": identity, "summary": summary, "cut": cut}
        for event_id, event_type, time, time_text, identity, summary, cut in
        [*passed.head, *passed.tail]
    ]
    for command in commands:
        items.append({**command, "time": command["created_at"], "row": "command"})
    for request in approvals:
        for decision in request["decisions"]:
            items.append({**decision, "time": decision["created_at"], "row": "decision",
                          "action": request["action"]})
    items.sort(key=lambda item: item["time"])
    return items


class _DigestTrees:
    """Merkle trees of the digests the bundle's runs appear in, each built once."""

    def __init__(self):
        self._trees: dict[int, MerkleTree] = {}
        self._digests: dict[int, SignedDigest] = {}

    def proofs_for(self, run: Run) -> list[dict]:
        proofs = []
        for entry in DigestEntry.objects.filter(run_uuid=run.uuid).select_related(
            "digest"
        ).order_by("digest__seq"):
            tree = self._tree(entry.digest)
            proofs.append({
                "digest_seq": entry.digest.seq, "leaf_index": entry.position,
                "tree_size": tree.size, "entry": entry.entry,
                "path": [node.hex() for node in tree.inclusion_proof(entry.position)],
            })
        return proofs

    def _tree(self, digest: SignedDigest) -> MerkleTree:
        if digest.pk not in self._trees:
            if len(self._trees) >= 32:  # bounded: a bundle of many runs spans many digests
                self._trees.pop(next(iter(self._trees)))
            entries = digest.entries.order_by("position").values_list("entry", flat=True)
            self._trees[digest.pk] = MerkleTree([e.encode() for e in entries.iterator()])
        self._digests[digest.seq] = digest
        return self._trees[digest.pk]

    def used(self) -> list[SignedDigest]:
        return [self._digests[seq] for seq in sorted(self._digests)]
