#!/usr/bin/env python3
"""Verify a Flightdeck evidence bundle offline, trusting nothing but the key you name.

    python evidence/verify_bundle.py BUNDLE.zip --fingerprint HEX [--fingerprint HEX ...]
                                     [--public-key KEY.pem ...] [--digest-dir DIR] [--quiet]

Needs only Python 3.11+ and the `cryptography` package: no Django, no Flightdeck install, no
network, so it can be copied out on its own and read against docs/evidence.md, which defines
every byte it checks. Exit status: 0 when the bundle verifies, 1 when anything is wrong (each
problem printed with the file, run and event concerned), 2 when it cannot run at all (no such
file, no trusted key given).

What it checks: the zip's entries (no duplicates, nothing outside the manifest), every file's
SHA-256 and size against manifest.json, the Ed25519 signature over manifest.json against a
trusted key (the bundle's own public key counts only if its fingerprint is one you trust),
every run's events (ids, headers, attribute digests, the hash chain and head hash), the audit
entries' own hashes, and the signed digests: their signatures, their chain, and each run's
Merkle inclusion proof, whose recorded head hash must match the bundle's chain at that event.
With --digest-dir it also checks the bundle against digest files kept outside Flightdeck.

Flightdeck's `manage.py verify_evidence` runs this same code. The hash definitions below are
restated from history/chain.py rather than imported, so this file stands alone; a test keeps
them equal.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import itertools
import json
import re
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

BUNDLE_FORMAT = "flightdeck-evidence/1"
DIGEST_FORMAT = "flightdeck-digest/1"
GENESIS = "0" * 64
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
PUBLIC_KEY = "public_key.pem"
UNLISTED = frozenset({MANIFEST, SIGNATURE})  # the only files the manifest cannot list
HEADER_KEYS = frozenset({
    "workflow_id", "run_id", "event_id", "type", "time", "workflow_type", "identity", "refs",
    "attributes_digest",
})
HEX64 = re.compile(r"[0-9a-f]{64}")
SALT = re.compile(r"[0-9a-f]{32}")
READ_BLOCK = 1 << 20
MAX_LINE = 64 << 20  # far above any line written (event attributes are at most a few MiB)


# --- the hash definitions (docs/evidence.md, docs/event-schema.md) ---------------------------


def attributes_digest(salt_hex: str, attributes: bytes) -> str:
    """hex(SHA-256(salt || attributes bytes)), as history/chain.py computes it at ingest."""
    return hashlib.sha256(bytes.fromhex(salt_hex) + attributes).hexdigest()


def chain_link(previous_hex: str, header: bytes) -> str:
    """hex(SHA-256(the 32 bytes of the previous chain hash || header bytes))."""
    return hashlib.sha256(bytes.fromhex(previous_hex) + header).hexdigest()


def canonical(value) -> bytes:
    """Canonical JSON as Flightdeck writes headers: UTF-8, keys sorted, no white space,
    non-ASCII as itself. Equal to orjson's output for strings, integers, null, lists and
    objects (headers hold nothing else; floats are written differently, so none may occur)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def leaf_hash(entry: bytes) -> bytes:
    """A digest entry's Merkle leaf: SHA-256(0x00 || entry bytes) (RFC 9162, section 2.1.1)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, path: list[bytes]) -> bytes:
    """The Merkle tree head that `path` leads to from leaf `index` of a tree of `size` leaves
    (RFC 9162, section 2.1.3.2). ValueError when the path cannot belong to such a tree."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of {size}")
    fn, sn, result = index, size - 1, leaf
    for sibling in path:
        if sn == 0:
            raise ValueError("the proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            result = node_hash(result, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("the proof is shorter than the tree is deep")
    return result


def fingerprint_of(public_key: Ed25519PublicKey) -> str:
    """Lowercase hex of SHA-256 over the 32 raw bytes of the public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def normalise_fingerprint(text: str) -> str:
    """Accept `sha256:` prefixes, colons, spaces and upper case, as people copy them."""
    value = text.strip().lower()
    if value.startswith("sha256:"):
        value = value[len("sha256:"):]
    value = re.sub(r"[\s:]", "", value)
    if not HEX64.fullmatch(value):
        raise ValueError(f"{text!r} is not a SHA-256 fingerprint (64 hex digits)")
    return value


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


# --- results ----------------------------------------------------------------------------


@dataclass
class Result:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    runs: int = 0
    events: int = 0
    redacted_events: int = 0
    digests: int = 0
    proofs: int = 0
    audit_entries: int = 0
    signed_by: str = ""
    redacted: bool | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def note(self, where: str, message: str) -> None:
        self.notes.append(f"{where}: {message}")

    def summary(self) -> str:
        kind = {True: "redacted", False: "raw", None: "unknown"}[self.redacted]
        counts = (f"{self.runs} runs, {self.events} events ({self.redacted_events} redacted), "
                  f"{self.digests} signed digests, {self.proofs} digest proofs, "
                  f"{self.audit_entries} audit entries; {kind} bundle")
        if self.ok:
            return f"VALID: {counts}; signed by key {self.signed_by}"
        return f"INVALID: {len(self.problems)} problems; {counts}"


@dataclass
class TrustedKeys:
    """What the verifier is told to trust: fingerprints, public keys, or both."""

    fingerprints: set[str] = field(default_factory=set)
    keys: dict[str, Ed25519PublicKey] = field(default_factory=dict)  # fingerprint -> key

    def add_fingerprint(self, text: str) -> None:
        self.fingerprints.add(normalise_fingerprint(text))

    def add_public_key(self, pem: bytes) -> None:
        key = load_public_key(pem)
        self.keys[fingerprint_of(key)] = key

    def add(self, value: str) -> None:
        """A command-line value: a PEM file's path, else a fingerprint. ValueError if neither
        parses."""
        if Path(value).is_file():
            self.add_public_key(Path(value).read_bytes())
        else:
            self.add_fingerprint(value)

    def __bool__(self) -> bool:
        return bool(self.fingerprints or self.keys)

    def key_for(self, fingerprint: str, offered: Ed25519PublicKey | None):
        """The key to check a signature with: a trusted key of this fingerprint, or the key
        the bundle offers if its fingerprint is trusted. None when neither."""
        if fingerprint in self.keys:
            return self.keys[fingerprint]
        if offered is not None and fingerprint in self.fingerprints:
            return offered
        return None

    def describe(self) -> str:
        return ", ".join(sorted(self.fingerprints | set(self.keys))) or "none"


# --- the bundle ---------------------------------------------------------------------------


class Bundle:
    """The zip, its one top-level folder, and checked access to its members."""

    def __init__(self, archive: zipfile.ZipFile, result: Result):
        self.archive = archive
        self.result = result
        self.root = ""
        self.members: dict[str, zipfile.ZipInfo] = {}  # path under the root -> entry

    def index(self) -> bool:
        names = [info.filename for info in self.archive.infolist()]
        seen: set[str] = set()
        for name in names:
            if name in seen:
                # A zip may hold two entries of one name: tools disagree on which one counts.
                self.result.fail(name, "appears twice in the zip")
            seen.add(name)
        manifests = [name for name in names if name.rsplit("/", 1)[-1] == MANIFEST]
        top = [name for name in manifests if name.count("/") <= 1]
        if len(top) != 1:
            self.result.fail("bundle", f"expected one {MANIFEST} at the top of the bundle, "
                                       f"found {len(top)}")
            return False
        self.root = top[0][: -len(MANIFEST)]
        for info in self.archive.infolist():
            name = info.filename
            if info.is_dir():
                continue
            if not name.startswith(self.root) or ".." in name.split("/") or name.startswith("/"):
                self.result.fail(name, "lies outside the bundle's folder")
                continue
            self.members[name[len(self.root):]] = info
        return True

    def read(self, path: str, limit: int = 64 << 20) -> bytes | None:
        info = self.members.get(path)
        if info is None:
            return None
        if info.file_size > limit:
            self.result.fail(path, f"is {info.file_size} bytes, more than this file may hold")
            return None
        return self.archive.read(info)

    def lines(self, path: str) -> Iterator[tuple[int, bytes]]:
        """(line number from 1, line without its newline), read in blocks. A line longer than
        MAX_LINE is a failure and ends the file: a bundle is checked before it is trusted,
        and one highly compressed line without a newline would otherwise be held in memory
        whole (a zip bomb)."""
        info = self.members.get(path)
        if info is None:
            return
        with self.archive.open(info) as stream:
            number = 0
            pending: list[bytes] = []  # the pieces of the line not yet ended
            pending_size = 0
            while block := stream.read(READ_BLOCK):
                *complete, rest = block.split(b"\n")
                if complete:
                    complete[0] = b"".join([*pending, complete[0]])
                    pending, pending_size = [], 0
                for line in complete:
                    number += 1
                    yield number, line
                pending.append(rest)
                pending_size += len(rest)
                if pending_size > MAX_LINE:
                    self.result.fail(path, f"line {number + 1} is longer than {MAX_LINE} bytes, "
                                           "more than any line of a bundle; not read further")
                    return
            if pending_size:
                number += 1
                yield number, b"".join(pending)

    def sha256(self, path: str) -> tuple[str, int]:
        digest = hashlib.sha256()
        size = 0
        with self.archive.open(self.members[path]) as stream:
            while block := stream.read(READ_BLOCK):
                digest.update(block)
                size += len(block)
        return digest.hexdigest(), size


def verify_bundle(path: str | Path, trusted: TrustedKeys, *, digest_dir: str | Path | None = None
                  ) -> Result:
    result = Result()
    if not trusted:
        raise ValueError("give at least one trusted key or fingerprint")
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        result.fail(str(path), f"cannot be read as a zip file ({exc})")
        return result
    with archive:
        bundle = Bundle(archive, result)
        if not bundle.index():
            return result
        manifest = _check_manifest(bundle, trusted)
        if manifest is None:
            return result
        keys = _bundle_trust_for_digests(trusted, bundle)
        digests = _check_digests(bundle, keys, manifest)
        external = _external_entries(digest_dir, keys, manifest, result) if digest_dir else {}
        for run in manifest.get("runs") or []:
            if not isinstance(run, dict) or not isinstance(run.get("uuid"), str):
                result.fail(MANIFEST, "a run entry without a uuid")
                continue
            RunCheck(bundle, run, digests, external.get(run["uuid"], [])).check()
        _check_audit(bundle)
    return result


def _check_manifest(bundle: Bundle, trusted: TrustedKeys) -> dict | None:
    result = bundle.result
    raw = bundle.read(MANIFEST)
    signature_text = bundle.read(SIGNATURE, limit=4096)
    offered_pem = bundle.read(PUBLIC_KEY, limit=65536)
    if raw is None:
        result.fail(MANIFEST, "missing")
        return None
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        result.fail(MANIFEST, f"is not valid JSON ({exc})")
        return None
    if not isinstance(manifest, dict):
        result.fail(MANIFEST, "is not a JSON object")
        return None
    if manifest.get("format") != BUNDLE_FORMAT:
        result.fail(MANIFEST, f"format is {manifest.get('format')!r}, expected {BUNDLE_FORMAT!r}")
    result.redacted = manifest.get("redacted") if isinstance(manifest.get("redacted"), bool) \
        else None

    offered = None
    if offered_pem is None:
        result.note(PUBLIC_KEY, "missing (the trusted public key given is used)")
    else:
        try:
            offered = load_public_key(offered_pem)
        except ValueError as exc:
            result.fail(PUBLIC_KEY, f"is not an Ed25519 public key in PEM ({exc})")
    named = (manifest.get("signing_key") or {}).get("fingerprint") if isinstance(
        manifest.get("signing_key"), dict) else None
    if offered is not None and named != fingerprint_of(offered):
        result.fail(MANIFEST, f"names signing key {named}, but {PUBLIC_KEY} has fingerprint "
                              f"{fingerprint_of(offered)}")
    fingerprint = fingerprint_of(offered) if offered is not None else str(named or "")
    key = trusted.key_for(fingerprint, offered)
    if key is None:
        result.fail(SIGNATURE, f"the bundle is signed by key {fingerprint or '(unnamed)'}, which "
                               f"is not a trusted key (trusted: {trusted.describe()})")
    elif signature_text is None:
        result.fail(SIGNATURE, "missing: the manifest is not signed")
    else:
        try:
            key.verify(base64.b64decode(signature_text.strip(), validate=True), raw)
            result.signed_by = fingerprint
        except (InvalidSignature, binascii.Error, ValueError):
            result.fail(SIGNATURE, f"the signature over {MANIFEST} does not verify with trusted "
                                   f"key {fingerprint}: {MANIFEST} was changed after signing, or "
                                   "the signature was made by another key")

    listed: set[str] = set()
    for item in manifest.get("files") or []:
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            result.fail(MANIFEST, "a file entry without a path")
            continue
        path = item["path"]
        listed.add(path)
        if path not in bundle.members:
            result.fail(path, "listed in the manifest but missing from the bundle")
            continue
        digest, size = bundle.sha256(path)
        if digest != item.get("sha256"):
            result.fail(path, f"SHA-256 is {digest}, the manifest says {item.get('sha256')}: "
                              "the file was changed after the bundle was signed")
        elif size != item.get("size"):
            result.fail(path, f"is {size} bytes, the manifest says {item.get('size')}")
    for path in sorted(set(bundle.members) - listed - UNLISTED):
        result.fail(path, "is in the bundle but not in the manifest")
    return manifest


# --- digests --------------------------------------------------------------------------------


@dataclass
class Digest:
    seq: int
    sha256: str
    body: dict
    where: str


def _check_digest_bytes(where: str, raw: bytes, signature: bytes | None, trusted: TrustedKeys,
                        result: Result) -> Digest | None:
    try:
        body = json.loads(raw)
    except ValueError as exc:
        result.fail(where, f"is not valid JSON ({exc})")
        return None
    if not isinstance(body, dict) or body.get("format") != DIGEST_FORMAT:
        result.fail(where, f"is not a {DIGEST_FORMAT} digest")
        return None
    fingerprint = str(body.get("key_fingerprint") or "")
    key = trusted.key_for(fingerprint, None)
    if key is None:
        result.fail(where, f"is signed by key {fingerprint or '(unnamed)'}, which is not a trusted "
                           "key (a digest's key must be given as a trusted public key or be the "
                           "bundle's own trusted key)")
        return None
    try:
        if signature is None:
            raise ValueError
        key.verify(base64.b64decode(signature.strip(), validate=True), raw)
    except (InvalidSignature, binascii.Error, ValueError):
        result.fail(where, "its signature does not verify: the digest was changed after signing, "
                           "or signed by another key")
        return None
    seq = body.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool):
        result.fail(where, "has no sequence number")
        return None
    return Digest(seq, hashlib.sha256(raw).hexdigest(), body, where)


def _check_chain_of_digests(digests: dict[int, Digest], result: Result, *, complete: bool) -> None:
    """Each digest names the SHA-256 of the one before it. Within a bundle only the digests that
    cover its runs are present, so only neighbours are compared; in a digest folder every
    digest from the first one present must be there (`complete`)."""
    ordered = sorted(digests)
    for previous, current in itertools.pairwise(ordered):
        if current != previous + 1:
            if complete:
                result.fail(digests[current].where,
                            f"digests {previous + 1}…{current - 1} are missing before it")
            continue
        named = digests[current].body.get("previous_sha256")
        if named != digests[previous].sha256:
            result.fail(digests[current].where,
                        f"names {named} as the previous digest's SHA-256, but digest {previous} "
                        f"hashes to {digests[previous].sha256}: the chain of digests is broken")


def _bundle_trust_for_digests(trusted: TrustedKeys, bundle: Bundle) -> TrustedKeys:
    """Digests carry no key file: a trusted fingerprint is enough when the bundle's own public
    key has it (the key is then known)."""
    keys = TrustedKeys(set(trusted.fingerprints), dict(trusted.keys))
    pem = bundle.read(PUBLIC_KEY, limit=65536)
    if pem:
        try:
            key = load_public_key(pem)
        except ValueError:
            return keys
        if fingerprint_of(key) in trusted.fingerprints:
            keys.keys[fingerprint_of(key)] = key
    return keys


def _check_digests(bundle: Bundle, keys: TrustedKeys, manifest: dict) -> dict[int, Digest]:
    result = bundle.result
    digests: dict[int, Digest] = {}
    for path in sorted(p for p in bundle.members if p.startswith("digests/")
                       and p.endswith(".json")):
        raw = bundle.read(path)
        signature = bundle.read(path[: -len(".json")] + ".sig", limit=4096)
        digest = _check_digest_bytes(path, raw or b"", signature, keys, result)
        if digest is None:
            continue
        if path != f"digests/{digest.seq:08d}.json":
            result.fail(path, f"holds digest {digest.seq}, not the one its name says")
            continue
        digests[digest.seq] = digest
    result.digests = len(digests)
    _check_chain_of_digests(digests, result, complete=False)
    listed = manifest.get("digests")
    if isinstance(listed, list) and sorted(listed) != sorted(digests):
        result.fail(MANIFEST, f"lists digests {sorted(listed)}, the bundle holds verified digests "
                              f"{sorted(digests)}")
    return digests


@dataclass
class Checkpoint:
    """A signed claim about a run at one moment: its chain reached `contiguous_through` with
    `head_hash`, and `event_count` events were stored."""

    where: str
    digest_seq: int
    created_at: str
    contiguous_through: int
    head_hash: str
    event_count: int
    last_event_id: int


def _entry_checkpoint(where: str, entry_bytes: bytes, digest: Digest, run_uuid: str,
                      result: Result) -> Checkpoint | None:
    try:
        entry = json.loads(entry_bytes)
    except ValueError:
        result.fail(where, "the digest entry is not valid JSON")
        return None
    if not isinstance(entry, dict) or entry.get("run") != run_uuid:
        result.fail(where, f"the digest entry is about run {entry.get('run') if isinstance(entry, dict) else None}, "  # noqa: E501
                           f"not {run_uuid}")
        return None
    numbers = [entry.get(k) for k in ("contiguous_through", "event_count", "last_event_id")]
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers):
        result.fail(where, "the digest entry lacks its event counts")
        return None
    head = entry.get("head_hash")
    if not isinstance(head, str) or not (head == "" or HEX64.fullmatch(head)):
        result.fail(where, "the digest entry's head hash is not 64 hex digits")
        return None
    return Checkpoint(where, digest.seq, str(digest.body.get("created_at")), numbers[0], head,
                      numbers[1], numbers[2])


def _external_entries(folder, trusted: TrustedKeys, manifest: dict, result: Result
                      ) -> dict[str, list[Checkpoint]]:
    """Checkpoints for the bundle's runs from a folder of digest files kept outside Flightdeck
    (digest-NNNNNNNN.json, .sig and .entries.jsonl), after checking the folder's own chain."""
    folder = Path(folder)
    if not folder.is_dir():
        result.fail(str(folder), "is not a folder of digest files")
        return {}
    wanted = {run.get("uuid") for run in manifest.get("runs") or [] if isinstance(run, dict)}
    found: dict[str, list[Checkpoint]] = {}
    digests: dict[int, Digest] = {}
    for path in sorted(folder.glob("digest-*.json")):
        signature = path.with_suffix(".sig")
        digest = _check_digest_bytes(
            str(path), path.read_bytes(), signature.read_bytes() if signature.exists() else None,
            trusted, result,
        )
        if digest is None:
            continue
        digests[digest.seq] = digest
        entries = path.with_name(path.name[: -len(".json")] + ".entries.jsonl")
        if not entries.exists():
            result.fail(str(entries), "missing: the digest's entries cannot be checked")
            continue
        leaves = []
        with entries.open("rb") as stream:
            for number, line in enumerate(stream, 1):
                entry_bytes = line.rstrip(b"\n")
                leaves.append(leaf_hash(entry_bytes))
                try:
                    run_uuid = json.loads(entry_bytes).get("run")
                except (ValueError, AttributeError):
                    result.fail(f"{entries} line {number}", "is not a JSON object")
                    continue
                if run_uuid in wanted:
                    checkpoint = _entry_checkpoint(f"{entries} line {number}", entry_bytes,
                                                   digest, run_uuid, result)
                    if checkpoint is not None:
                        found.setdefault(run_uuid, []).append(checkpoint)
        runs = digest.body.get("runs") or {}
        if len(leaves) != runs.get("count") or _merkle_root(leaves).hex() != runs.get("root"):
            result.fail(str(entries), f"does not hash to the root signed in digest {digest.seq}: "
                                      "entries were changed, added or removed")
    _check_chain_of_digests(digests, result, complete=True)
    return found


def _merkle_root(leaves: list[bytes]) -> bytes:
    """The tree head of RFC 9162 over leaf hashes (empty tree: SHA-256 of nothing)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    level = leaves
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])  # an odd last node moves up unchanged
        level = paired
    return level[0]


# --- runs -----------------------------------------------------------------------------------


class RunCheck:
    """One run: its metadata file, its events in order, its chain against the manifest and
    against every signed checkpoint (digest proofs in the bundle, digest files outside)."""

    def __init__(self, bundle: Bundle, listed: dict, digests: dict[int, Digest],
                 external: list[Checkpoint]):
        self.bundle, self.result = bundle, bundle.result
        self.listed = listed
        self.uuid = listed["uuid"]
        self.folder = f"runs/{self.uuid}/"
        self.digests = digests
        self.checkpoints: list[Checkpoint] = list(external)
        self.chain_at: dict[int, str] = {}

    def where(self, event_id: int | None = None, line: int | None = None) -> str:
        name = f"{self.folder}events.jsonl"
        ident = f"run {self.uuid} ({self.listed.get('workflow_id')} / {self.listed.get('run_id')})"
        if line is not None:
            return f"{name} line {line} ({ident}, event {event_id})"
        return f"{name} ({ident})"

    def check(self) -> None:
        self.result.runs += 1
        meta_path = f"{self.folder}run.json"
        raw = self.bundle.read(meta_path)
        if raw is None:
            self.result.fail(meta_path, "missing")
            return
        try:
            meta = json.loads(raw)
        except ValueError:
            self.result.fail(meta_path, "is not valid JSON")
            return
        for name in ("workflow_id", "run_id", "event_count", "contiguous_through", "head_hash"):
            if meta.get(name) != self.listed.get(name):
                self.result.fail(meta_path, f"{name} is {meta.get(name)!r}, the manifest says "
                                            f"{self.listed.get(name)!r}")
        self.meta = meta
        self._read_proofs()
        wanted = {c.contiguous_through for c in self.checkpoints}
        self._check_events(wanted)
        self._check_checkpoints()

    def _read_proofs(self) -> None:
        path = f"{self.folder}digest_proofs.jsonl"
        for number, line in self.bundle.lines(path):
            where = f"{path} line {number}"
            try:
                proof = json.loads(line)
                seq, index, size = proof["digest_seq"], proof["leaf_index"], proof["tree_size"]
                entry = proof["entry"].encode()
                hashes = [bytes.fromhex(h) for h in proof["path"]]
            except (ValueError, KeyError, TypeError, AttributeError):
                self.result.fail(where, "is not a digest proof")
                continue
            digest = self.digests.get(seq)
            if digest is None:
                self.result.fail(where, f"refers to digest {seq}, which is not in the bundle or "
                                        "did not verify")
                continue
            runs = digest.body.get("runs") or {}
            try:
                if size != runs.get("count"):
                    raise ValueError(f"the tree size is {size}, digest {seq} covers "
                                     f"{runs.get('count')} runs")
                root = root_from_inclusion_proof(index, size, leaf_hash(entry), hashes)
                if root.hex() != runs.get("root"):
                    raise ValueError(f"the entry is not in digest {seq} (its proof leads to "
                                     "another root)")
            except ValueError as exc:
                self.result.fail(where, str(exc))
                continue
            checkpoint = _entry_checkpoint(where, entry, digest, self.uuid, self.result)
            if checkpoint is not None:
                self.result.proofs += 1
                self.checkpoints.append(checkpoint)

    def _check_events(self, wanted: set[int]) -> None:
        path = f"{self.folder}events.jsonl"
        if path not in self.bundle.members:
            self.result.fail(path, "missing")
            return
        through = self.meta.get("contiguous_through")
        through = through if isinstance(through, int) else 0
        previous_hash = GENESIS
        expected = 1
        last_id = 0
        chain_broken = False
        count = 0
        for number, line in self.bundle.lines(path):
            count += 1
            event = self._parse_line(number, line)
            if event is None:
                chain_broken = True
                continue
            event_id, header = event["event_id"], event["header_bytes"]
            if event_id <= last_id:
                self.result.fail(self.where(event_id, number),
                                 f"event {event_id} comes after event {last_id}: out of order "
                                 "(events were swapped or repeated)")
                chain_broken = True
            last_id = max(last_id, event_id)
            if chain_broken or event_id > through:
                if event.get("chain_hash") and not chain_broken:
                    self.result.fail(self.where(event_id, number),
                                     "has a chain hash although it lies beyond a gap")
                continue
            if event_id != expected:
                missing = (f"event {expected}" if event_id == expected + 1
                           else f"events {expected}…{event_id - 1}")
                self.result.fail(self.where(event_id, number),
                                 f"{missing} missing from the chain (removed, or never stored)")
                chain_broken = True
                continue
            previous_hash = chain_link(previous_hash, header)
            if event.get("chain_hash") != previous_hash:
                self.result.fail(self.where(event_id, number),
                                 "chain hash does not match: this event's header, or one before "
                                 "it, was changed")
                chain_broken = True
                continue
            if event_id in wanted:
                self.chain_at[event_id] = previous_hash
            expected += 1
        self.result.events += count
        if not chain_broken:
            if expected - 1 != through:
                self.result.fail(self.where(), f"the chain reaches event {expected - 1}, run.json "
                                               f"says it runs through event {through}: events "
                                               "were removed")
            elif through and previous_hash != self.meta.get("head_hash"):
                self.result.fail(self.where(), "the chain's head does not match the head hash in "
                                               "run.json and the manifest")
        if count != self.meta.get("event_count"):
            self.result.fail(self.where(), f"holds {count} events, run.json says "
                                           f"{self.meta.get('event_count')}")
        self.computed_through = expected - 1 if not chain_broken else None
        self.counted = count

    def _parse_line(self, number: int, line: bytes) -> dict | None:
        """Parse one events.jsonl line and check what needs no chain: header, attributes
        against their digest, redaction. None when the line cannot be used at all."""
        try:
            event = json.loads(line)
            event_id = event["event_id"]
            header_text = event["header"]
            if not isinstance(event_id, int) or not isinstance(header_text, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            self.result.fail(self.where(None, number), "is not an event line (see evidence.md)")
            return None
        where = self.where(event_id, number)
        header_bytes = header_text.encode()
        event["header_bytes"] = header_bytes
        try:
            header = json.loads(header_bytes)
        except ValueError:
            self.result.fail(where, "header is not valid JSON")
            return event
        if not isinstance(header, dict) or set(header) != HEADER_KEYS:
            self.result.fail(where, "header does not hold exactly the header fields")
            return event
        if _holds_float(header) or canonical(header) != header_bytes:
            self.result.fail(where, "header is not in canonical form")
        for name in ("workflow_id", "run_id"):
            if header.get(name) != self.meta.get(name):
                self.result.fail(where, f"header's {name} is {header.get(name)!r}, not the run's")
        if header.get("event_id") != event_id:
            self.result.fail(where, f"header says event {header.get('event_id')}, the line says "
                                    f"{event_id}")
        redacted = event.get("redacted") is True
        if redacted:
            self.result.redacted_events += 1
            if event.get("attributes") is not None or event.get("salt") is not None:
                self.result.fail(where, "is marked redacted but carries attributes or a salt")
        else:
            attributes, salt = event.get("attributes"), event.get("salt")
            if not isinstance(attributes, str) or not isinstance(salt, str) \
                    or not SALT.fullmatch(salt):
                self.result.fail(where, "carries no attributes and salt, and is not marked "
                                        "redacted")
            elif attributes_digest(salt, attributes.encode()) != header.get("attributes_digest"):
                self.result.fail(where, "attributes do not match the digest in the header: they "
                                        "were changed")
            if self.result.redacted and event.get("secret_findings"):
                self.result.fail(where, "the bundle is redacted but this event, which has secret "
                                        "findings, carries its raw attributes")
        return event

    def _check_checkpoints(self) -> None:
        through = getattr(self, "computed_through", None)
        for checkpoint in self.checkpoints:
            where = f"{checkpoint.where} (run {self.uuid}, digest {checkpoint.digest_seq} of " \
                    f"{checkpoint.created_at})"
            counted = getattr(self, "counted", 0)
            if counted < checkpoint.event_count:
                self.result.fail(where, f"the digest recorded {checkpoint.event_count} events; "
                                        f"the bundle holds {counted}: events were removed after "
                                        "the digest")
            if checkpoint.contiguous_through == 0:
                continue
            if through is None:
                self.result.fail(where, "cannot be compared: the run's chain is broken")
                continue
            if checkpoint.contiguous_through > through:
                self.result.fail(where, f"the digest recorded the chain through event "
                                        f"{checkpoint.contiguous_through}; the bundle's chain "
                                        f"ends at event {through}: events were removed")
                continue
            if self.chain_at.get(checkpoint.contiguous_through) != checkpoint.head_hash:
                self.result.fail(where, f"the digest signed head hash {checkpoint.head_hash} at "
                                        f"event {checkpoint.contiguous_through}, but the bundle's "
                                        "chain there is "
                                        f"{self.chain_at.get(checkpoint.contiguous_through)}: "
                                        f"events 1…{checkpoint.contiguous_through} were rewritten "
                                        "after the digest")
        if not self.checkpoints:
            self.result.note(self.where(), "no signed digest covers this run: its events are "
                                           "proven only as the database held them at export")


def _holds_float(value) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


# --- audit entries --------------------------------------------------------------------------


def _check_audit(bundle: Bundle) -> None:
    """Each audit entry's hash covers the previous entry's hash and its content bytes. Only
    entries touching the bundle's runs are present, so links are checked between neighbours."""
    path = "audit/entries.jsonl"
    previous: tuple[int, str] | None = None
    for number, line in bundle.lines(path):
        where = f"{path} line {number}"
        try:
            entry = json.loads(line)
            seq, prev_hash, digest = entry["seq"], entry["prev_hash"], entry["hash"]
            content = entry["content"].encode()
        except (ValueError, KeyError, TypeError, AttributeError):
            bundle.result.fail(where, "is not an audit entry line")
            continue
        bundle.result.audit_entries += 1
        try:
            computed = hashlib.sha256(bytes.fromhex(prev_hash) + content).hexdigest()
        except (ValueError, TypeError):
            computed = None
        if computed != digest:
            bundle.result.fail(f"{where} (audit entry {seq})",
                               "hash does not match its content: the entry was changed")
        if previous is not None and seq == previous[0] + 1 and prev_hash != previous[1]:
            bundle.result.fail(f"{where} (audit entry {seq})",
                               f"does not follow audit entry {previous[0]}: the chain is broken")
        previous = (seq, digest)


# --- command line ---------------------------------------------------------------------------


def trusted_from_arguments(fingerprints: list[str], key_files: list[str]) -> TrustedKeys:
    trusted = TrustedKeys()
    for text in fingerprints:
        trusted.add_fingerprint(text)
    for name in key_files:
        trusted.add_public_key(Path(name).read_bytes())
    return trusted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", help="the evidence bundle (.zip)")
    parser.add_argument("--fingerprint", action="append", default=[],
                        help="SHA-256 fingerprint of a trusted signing key (repeatable)")
    parser.add_argument("--public-key", action="append", default=[],
                        help="PEM file of a trusted public signing key (repeatable)")
    parser.add_argument("--digest-dir", help="a folder of digest files kept outside Flightdeck")
    parser.add_argument("--quiet", action="store_true", help="print problems and the verdict only")
    args = parser.parse_args(argv)
    try:
        trusted = trusted_from_arguments(args.fingerprint, args.public_key)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not trusted:
        print("error: name the key you trust: --fingerprint HEX or --public-key FILE",
              file=sys.stderr)
        return 2
    if not Path(args.bundle).is_file():
        print(f"error: no such file: {args.bundle}", file=sys.stderr)
        return 2
    result = verify_bundle(args.bundle, trusted, digest_dir=args.digest_dir)
    for problem in result.problems:
        print(f"FAIL {problem}")
    if not args.quiet:
        for note in result.notes:
            print(f"note {note}")
    print(result.summary())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
