"""Check the database against the signed digests: has anything a digest recorded been
rewritten since?

`verify_history` re-hashes each stored chain, which someone who controls the database can
recompute after a rewrite. The digests were signed with a key the database does not hold and
published outside it, so this check compares the database with them instead: each digest's
signature, its link to the one before and its Merkle head over its entries; each run's stored
chain hash at the event a digest recorded; the audit log's entry at the head a digest recorded.
Read the digests from their published folder when you can: the copies in the database could
have been deleted by the same person (the folder catches that).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.db.models import Q

from audit.models import AuditEntry
from evidence.verify_bundle import (
    DIGEST_FORMAT,
    GENESIS,
    TrustedKeys,
    _merkle_root,
    leaf_hash,
)
from history.models import Event, Run


@dataclass
class DigestCopy:
    """One digest as read from the database or a folder: its bytes, signature and entries."""

    where: str
    body: bytes
    signature: bytes
    entries: list[bytes]


@dataclass
class Findings:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    digests: int = 0
    runs: int = 0

    def fail(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")


def digests_in_database() -> Iterator[DigestCopy]:
    from evidence.models import SignedDigest

    for digest in SignedDigest.objects.order_by("seq").iterator(chunk_size=50):
        yield DigestCopy(
            f"digest {digest.seq} (database)", digest.body.encode(), digest.signature.encode(),
            [e.encode() for e in digest.entries.order_by("position").values_list(
                "entry", flat=True)],
        )


def digests_in_folder(folder: Path) -> Iterator[DigestCopy]:
    for path in sorted(folder.glob("digest-*.json")):
        stem = path.name[: -len(".json")]
        signature = path.with_name(stem + ".sig")
        entries = path.with_name(stem + ".entries.jsonl")
        yield DigestCopy(
            str(path), path.read_bytes(),
            signature.read_bytes() if signature.exists() else b"",
            entries.read_bytes().splitlines() if entries.exists() else [],
        )


def check(copies: Iterator[DigestCopy], trusted: TrustedKeys) -> Findings:
    """Check every digest, and the database against every run state each one recorded."""
    findings = Findings()
    previous: tuple[int, str] | None = None
    for copy in copies:
        body = _verified_body(copy, trusted, findings)
        if body is None:
            continue
        seq = body["seq"]
        findings.digests += 1
        if previous is None and seq != 1:
            findings.notes.append(f"{copy.where}: the first digest present is {seq}")
        elif previous is not None and previous[0] != seq - 1:
            findings.fail(copy.where, f"digests {previous[0] + 1}…{seq - 1} are missing")
        elif previous is not None and body.get("previous_sha256") != previous[1]:
            findings.fail(copy.where, "does not name the previous digest's SHA-256: the chain "
                                      "of digests is broken")
        if seq == 1 and body.get("previous_sha256") != GENESIS:
            findings.fail(copy.where, "is digest 1 but names a previous digest")
        previous = (seq, hashlib.sha256(copy.body).hexdigest())
        runs = body.get("runs") or {}
        root = _merkle_root([leaf_hash(entry) for entry in copy.entries])
        if len(copy.entries) != runs.get("count") or root.hex() != runs.get("root"):
            findings.fail(copy.where, "its entries do not hash to the signed Merkle head")
            continue
        _check_audit_head(copy.where, body.get("audit") or {}, findings)
        entries = [json.loads(entry) for entry in copy.entries]
        for start in range(0, len(entries), BATCH):
            _check_runs(copy.where, entries[start:start + BATCH], findings)
    return findings


BATCH = 200


def _verified_body(copy: DigestCopy, trusted: TrustedKeys, findings: Findings) -> dict | None:
    import base64

    from cryptography.exceptions import InvalidSignature

    try:
        body = json.loads(copy.body)
        fingerprint = body["key_fingerprint"]
        if body.get("format") != DIGEST_FORMAT or not isinstance(body.get("seq"), int):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        findings.fail(copy.where, "is not a Flightdeck digest")
        return None
    key = trusted.key_for(fingerprint, None)
    try:
        if key is None:
            raise InvalidSignature
        key.verify(base64.b64decode(copy.signature.strip(), validate=True), copy.body)
    except (InvalidSignature, ValueError):
        findings.fail(copy.where, f"its signature does not verify with a trusted key (it names "
                                  f"key {fingerprint})")
        return None
    return body


def _check_audit_head(where: str, head: dict, findings: Findings) -> None:
    seq, recorded = head.get("seq") or 0, head.get("hash")
    if not seq:
        return
    stored = AuditEntry.objects.filter(seq=seq).values_list("hash", flat=True).first()
    if stored is None:
        findings.fail(where, f"recorded audit entry {seq} as the log's head; it is gone")
    elif stored != recorded:
        findings.fail(where, f"recorded audit entry {seq} with hash {recorded}; the database "
                             f"holds {stored}: the audit log was rewritten after the digest")


def _check_runs(where: str, entries: list[dict], findings: Findings) -> None:
    """Each run's stored chain hash at the event a digest recorded must be the head hash signed
    there (verify_history then ties every stored chain hash to its event's header)."""
    runs = {str(uuid): pk for uuid, pk in Run.objects.filter(
        uuid__in=[entry["run"] for entry in entries]).values_list("uuid", "pk")}
    wanted = Q(pk__in=[])
    for entry in entries:
        if entry["run"] in runs and entry["contiguous_through"]:
            wanted |= Q(run_id=runs[entry["run"]], event_id=entry["contiguous_through"])
    stored = {
        (run_id, event_id): chain_hash
        for run_id, event_id, chain_hash in Event.objects.filter(wanted).values_list(
            "run_id", "event_id", "chain_hash")
    }
    for entry in entries:
        findings.runs += 1
        pk = runs.get(entry["run"])
        if pk is None:
            findings.notes.append(f"run {entry['run']}: deleted since {where} recorded it")
            continue
        through = entry["contiguous_through"]
        if not through:
            continue
        held = stored.get((pk, through))
        if held != entry["head_hash"]:
            findings.fail(f"run {entry['run']} ({entry['workflow_id']} / {entry['run_id']})",
                          f"{where} signed head hash {entry['head_hash']} at event {through}; "
                          f"the database holds {held}: events 1…{through} were rewritten or "
                          "removed after it")
