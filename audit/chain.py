"""Checking the audit log's hash chain: every entry re-hashed in order, linked to the one
before, and the head row pointing at the last one (so that entries cut off the end are noticed
too, not only entries changed or removed in the middle)."""

from __future__ import annotations

from dataclasses import dataclass

from audit.models import GENESIS, AuditEntry, AuditHead


@dataclass(frozen=True)
class ChainCheck:
    entries: int  # how many entries were checked
    head_hash: str  # the hash of the last entry checked (GENESIS for an empty log)
    broken_at: int | None = None  # seq of the first bad entry, or None
    problem: str = ""  # what is wrong there, for people

    @property
    def intact(self) -> bool:
        return self.broken_at is None and not self.problem


def verify() -> ChainCheck:
    """Re-hash the whole log in sequence order, up to the head as it stands when the check
    begins: entries written meanwhile (after it) are left to the next check, rather than
    taken for entries the head does not know of. Memory stays flat: entries are streamed."""
    recorded = _head()
    prev, count, last_seq = GENESIS, 0, 0
    entries = AuditEntry.objects.filter(seq__lte=recorded[1]).order_by("seq")
    for entry in entries.iterator(chunk_size=2000):
        if entry.prev_hash != prev:
            return ChainCheck(count, prev, entry.seq,
                              f"entry #{entry.seq} does not link to the entry before it "
                              "(an entry before it was removed or changed)")
        if entry.compute_hash() != entry.hash:
            return ChainCheck(count, prev, entry.seq,
                              f"entry #{entry.seq} does not match its hash (it was changed)")
        prev, last_seq, count = entry.hash, entry.seq, count + 1
    if recorded != (prev, last_seq):
        return ChainCheck(count, prev, None,
                          f"the head records entry #{recorded[1]} ({recorded[0][:12]}…) but the "
                          f"log ends at #{last_seq} ({prev[:12]}…): entries were cut off the end")
    # Entries past the head are legitimate only if the head has moved since (record() writes
    # an entry and moves the head in one transaction).
    if (AuditEntry.objects.filter(seq__gt=last_seq).exists()
            and _head() == recorded):
        return ChainCheck(count, prev, None,
                          f"entries follow #{last_seq} that the head does not record "
                          "(written around the log)")
    return ChainCheck(count, prev)


def _head() -> tuple[str, int]:
    head = AuditHead.objects.filter(pk=1).first()
    return (head.hash, head.seq) if head is not None else (GENESIS, 0)
