"""What storing an event adds to it from the event alone: its salt and header (the bytes the
hash chain covers, docs/event-schema.md), and its secret scan (findings and masked copy).
Ingest seals each new event as it stores it (`history.ingest.prepare_events`); the chain hash,
which links an event to the one before it, is ingest's.
"""

from __future__ import annotations

from dataclasses import dataclass

from history import chain
from history.secrets import scan
from history.wire import ParsedEvent


@dataclass(slots=True)
class Seal:
    salt: str
    header: bytes
    findings: list[dict] | None  # as stored: None when the scan found nothing
    masked: dict | None  # the attributes with secrets masked; None when nothing was found
    masked_bytes: bytes | None  # their canonical JSON


def seal(parsed: ParsedEvent, salt: str) -> Seal:
    findings, masked = scan(parsed.attributes)
    return Seal(
        salt=salt,
        header=parsed.header_with_salt(salt),
        findings=_storable(findings) or None,
        masked=masked,
        masked_bytes=None if masked is None else chain.canonical(masked),
    )


def _storable(findings: list[dict]) -> list[dict]:
    """Finding paths name attribute keys, which may hold U+0000: JSON columns on PostgreSQL
    cannot, so it is written as the escape text \\u0000 in the path."""
    if any("\x00" in finding["path"] for finding in findings):
        return [{**f, "path": f["path"].replace("\x00", "\\u0000")} for f in findings]
    return findings
