"""Signed digests: on a schedule, sign what every run's chain and the audit chain looked like.

Each digest records, as Merkle leaves, every run whose state (event count, last event id,
chain length, head hash) changed since it was last recorded; an unchanged run stays proven by
the last digest that recorded it. It also records the audit log's head and the SHA-256 of the
previous digest, so digests form a chain of their own (as AWS CloudTrail's digest files do):
one removed or replaced is noticed by the next. Digests are kept in the database and published
outside it (EVIDENCE_DIGEST_DIR, EVIDENCE_DIGEST_WEBHOOK_URL): whoever can rewrite the database
can neither re-sign nor reach the copies, so a history rewritten after a digest disagrees with
it. The format is in docs/evidence.md.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from datetime import UTC, timedelta
from pathlib import Path

import orjson
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from audit.models import AuditHead
from evidence import keys
from evidence.merkle import MerkleTree
from evidence.models import DigestEntry, SignedDigest
from evidence.verify_bundle import DIGEST_FORMAT, GENESIS, leaf_hash
from history.models import Run

log = logging.getLogger(__name__)

# Runs updated this long before the previous digest are looked at again: an ingest transaction
# that set updated_at before that digest read the runs may have committed only after it.
LOOKBACK = timedelta(minutes=10)
CHUNK = 2000
STATE_FIELDS = ("contiguous_through", "head_hash", "event_count", "last_event_id")


def utc_text(moment) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def entry_bytes(row: dict) -> bytes:
    """A run's leaf: canonical JSON (keys sorted) of its identity and chain state."""
    return orjson.dumps(
        {
            "run": str(row["uuid"]),
            "namespace": row["namespace__slug"],
            "workflow_id": row["workflow_id"],
            "run_id": row["run_id"],
            "event_count": row["event_count"],
            "last_event_id": row["last_event_id"],
            "contiguous_through": row["contiguous_through"],
            "head_hash": row["head_hash"],
        },
        option=orjson.OPT_SORT_KEYS,
    )


def _chunks(rows, size: int):
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _last_recorded(uuids: list) -> dict:
    """The state each run had in the last digest that recorded it."""
    latest = dict(
        DigestEntry.objects.filter(run_uuid__in=uuids)
        .values("run_uuid").annotate(last=Max("digest_id")).values_list("run_uuid", "last")
    )
    return {
        run_uuid: state
        for run_uuid, digest_id, *state in DigestEntry.objects.filter(
            run_uuid__in=uuids, digest_id__in=set(latest.values())
        ).values_list("run_uuid", "digest_id", *STATE_FIELDS)
        if latest[run_uuid] == digest_id
    }


def changed_runs(previous: SignedDigest | None):
    """Rows of the runs to record, in uuid order (the leaf order)."""
    runs = Run.objects.all()
    if previous is not None:
        runs = runs.filter(updated_at__gte=previous.created_at - LOOKBACK)
    rows = runs.order_by("uuid").values(
        "uuid", "namespace__slug", "workflow_id", "run_id", *STATE_FIELDS
    ).iterator(chunk_size=CHUNK)
    for chunk in _chunks(rows, CHUNK):
        recorded = _last_recorded([row["uuid"] for row in chunk])
        for row in chunk:
            if recorded.get(row["uuid"]) != [row[name] for name in STATE_FIELDS]:
                yield row


def sign_digest() -> SignedDigest | None:
    """Sign the next digest and store it with its entries; None if another process signed
    that sequence number first. Publishing outside the database is `publish_pending`'s."""
    previous = SignedDigest.objects.order_by("-seq").first()
    seq = previous.seq + 1 if previous else 1
    key_fingerprint = keys.fingerprint()  # fails before any work without a key
    created_at = timezone.now()
    leaves: list[bytes] = []
    # Entries go to a scratch file, not a list: the first digest of a large database records
    # every run, and only their 32-byte leaf hashes need to stay in memory for the tree.
    with tempfile.TemporaryFile() as scratch:
        for row in changed_runs(previous):
            data = entry_bytes(row)
            scratch.write(data + b"\n")
            leaves.append(leaf_hash(data))
        tree = MerkleTree.from_leaf_hashes(leaves)
        head = AuditHead.objects.filter(pk=1).values_list("seq", "hash").first() or (0, GENESIS)
        body = orjson.dumps(
            {
                "format": DIGEST_FORMAT,
                "seq": seq,
                "created_at": utc_text(created_at),
                "previous_sha256": previous.sha256 if previous else GENESIS,
                "key_fingerprint": key_fingerprint,
                "source": settings.FLIGHTDECK_BASE_URL,
                "runs": {"count": tree.size, "root": tree.root.hex()},
                "audit": {"seq": head[0], "hash": head[1]},
            },
            option=orjson.OPT_SORT_KEYS,
        )
        scratch.seek(0)
        try:
            with transaction.atomic():
                # The unique seq makes a concurrent signer of the same number fail here, whole.
                digest = SignedDigest.objects.create(
                    seq=seq, created_at=created_at, body=body.decode(),
                    signature=keys.sign(body), sha256=hashlib.sha256(body).hexdigest(),
                    previous_sha256=previous.sha256 if previous else GENESIS,
                    key_fingerprint=key_fingerprint, run_count=tree.size, audit_seq=head[0],
                    audit_hash=head[1],
                )
                _store_entries(digest, scratch)
        except IntegrityError:
            log.info("digest %s was signed by another process first", seq)
            return None
    log.info("signed digest %s over %s runs", seq, tree.size)
    return digest


def _store_entries(digest: SignedDigest, scratch) -> None:
    batch = []
    for position, line in enumerate(scratch):
        data = line.rstrip(b"\n")
        fields = orjson.loads(data)
        batch.append(DigestEntry(
            digest=digest, position=position, run_uuid=fields["run"],
            contiguous_through=fields["contiguous_through"], head_hash=fields["head_hash"],
            event_count=fields["event_count"], last_event_id=fields["last_event_id"],
            entry=data.decode(),
        ))
        if len(batch) >= CHUNK:
            DigestEntry.objects.bulk_create(batch)
            batch = []
    DigestEntry.objects.bulk_create(batch)


# --- publishing outside the database ---------------------------------------------------------


class DigestFileConflict(Exception):
    """A digest file of this number exists with other content: the database was reset or
    restored, or someone wrote there. It is never overwritten."""


def _write_once(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically; a file already there must hold exactly `data`."""
    if path.exists():
        if path.read_bytes() != data:
            raise DigestFileConflict(f"{path} exists with other content; not overwritten")
        return
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # link() refuses an existing target, where rename() would silently replace it.
        os.link(temporary, path)
    except FileExistsError:
        if path.read_bytes() != data:
            raise DigestFileConflict(f"{path} exists with other content; not overwritten") from None
    finally:
        os.unlink(temporary)


def entries_bytes(digest: SignedDigest) -> bytes:
    lines = digest.entries.order_by("position").values_list("entry", flat=True)
    return b"".join(line.encode() + b"\n" for line in lines.iterator(chunk_size=CHUNK))


def write_to_folder(digest: SignedDigest, folder: Path) -> Path:
    """digest-NNNNNNNN.entries.jsonl, .sig, then .json (its presence means complete)."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / digest.file_stem
    _write_once(stem.with_name(stem.name + ".entries.jsonl"), entries_bytes(digest))
    _write_once(stem.with_name(stem.name + ".sig"), digest.signature.encode() + b"\n")
    _write_once(stem.with_name(stem.name + ".json"), digest.body.encode())
    return stem.with_name(stem.name + ".json")


def send_to_webhook(digest: SignedDigest, url: str) -> None:
    """POST the digest, its signature and its entries; raises on refusal or a non-2xx answer."""
    from interventions.outbound import post

    payload = orjson.dumps({
        "digest": digest.body,
        "signature": digest.signature,
        "entries": entries_bytes(digest).decode().splitlines(),
    })
    answer = post(url, payload, {"Content-Type": "application/json"},
                  timeout=settings.WEBHOOK_TIMEOUT_SECONDS)
    if not 200 <= answer.status < 300:
        raise OSError(f"the digest webhook answered HTTP {answer.status}")


def publish_pending(limit: int = 24) -> int:
    """Publish digests not yet written to the folder or sent to the webhook, oldest first.
    A failure is recorded on the digest and retried on the next run. Returns how many were
    published to every configured place."""
    folder = settings.EVIDENCE_DIGEST_DIR
    url = settings.EVIDENCE_DIGEST_WEBHOOK_URL
    pending = SignedDigest.objects.none()
    if folder:
        pending = pending | SignedDigest.objects.filter(written_at__isnull=True)
    if url:
        pending = pending | SignedDigest.objects.filter(webhook_sent_at__isnull=True)
    done = 0
    for digest in pending.order_by("seq")[:limit]:
        errors = []
        updates: dict = {}
        if folder and digest.written_at is None:
            try:
                updates["written_to"] = str(write_to_folder(digest, Path(folder)))
                updates["written_at"] = timezone.now()
            except (OSError, DigestFileConflict) as exc:
                errors.append(f"folder: {exc}")
        if url and digest.webhook_sent_at is None:
            try:
                send_to_webhook(digest, url)
                updates["webhook_sent_at"] = timezone.now()
            except Exception as exc:  # a refused address, HTTP errors, timeouts: all retried
                errors.append(f"webhook: {exc}")
        updates["publish_error"] = "; ".join(errors)[:2000]
        SignedDigest.objects.filter(pk=digest.pk).update(**updates)
        if errors:
            log.error("digest %s not published: %s", digest.seq, updates["publish_error"])
        else:
            done += 1
    return done
