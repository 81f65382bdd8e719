"""Store a batch of events: idempotent, order-independent, hash-chained.

`ingest_batch` is the write path into existing runs' histories (the API view and the seeding
command call it); `history.seeding.bulk_load` creates many new runs at once through the same
`prepare_events`, so both store the same bytes and hashes. For each run it touches it takes the
run's row lock, so concurrent batches for one run are applied one after another and cannot
interleave their received sequence, counters or chain.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson
from django.db import connection, transaction
from django.utils import timezone

from access.models import Agent, Token
from history import chain
from history.models import Event, Run
from history.sealing import seal
from history.signals import batch_stored, events_stored
from history.vocabulary import CLOSED_STATUSES, STATUS_EVENTS
from history.wire import InvalidEvent, ParsedEvent, parse_event

STORED, DUPLICATE, CONFLICT, INVALID = "stored", "duplicate", "conflict", "invalid"

# An agent's last_seen_at moves at most this often, to keep a write off each batch.
LAST_SEEN_PRECISION = timedelta(minutes=1)


class RunOfAnotherAgent(Exception):
    """A batch wrote to a run that belongs to a different agent of the namespace."""

    def __init__(self, workflow_id: str, run_id: str):
        super().__init__(
            f"run workflow_id={workflow_id!r} run_id={run_id!r} belongs to another agent"
        )


@dataclass
class ItemResult:
    index: int
    status: str
    error: str | None = None

    def as_dict(self) -> dict:
        result = {"index": self.index, "status": self.status}
        if self.error:
            result["error"] = self.error
        return result


@dataclass
class BatchOutcome:
    results: list[ItemResult]
    runs: list[Run] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for result in self.results if result.status == status)

    @property
    def all_accepted(self) -> bool:
        return all(result.status in (STORED, DUPLICATE) for result in self.results)


def ingest_batch(token: Token, items: list, *, max_attributes_bytes: int) -> BatchOutcome:
    """Validate and store `items` (the decoded `events` array) for `token`'s agent.

    Valid events are stored even when others in the batch are not; duplicates are no-ops and
    conflicts keep the stored event. Raises RunOfAnotherAgent, storing nothing, when any event
    targets a run of another agent.
    """
    agent = token.agent
    results: list[ItemResult | None] = [None] * len(items)
    by_run: dict[tuple[str, str], dict[int, ParsedEvent]] = defaultdict(dict)
    for index, item in enumerate(items):
        try:
            parsed = parse_event(index, item, max_attributes_bytes=max_attributes_bytes)
        except InvalidEvent as exc:
            where = f"events[{index}]" if str(exc).startswith(":") else f"events[{index}]."
            results[index] = ItemResult(index, INVALID, f"{where}{exc}")
            continue
        same_batch = by_run[parsed.run_key].get(parsed.event_id)
        if same_batch is None:
            by_run[parsed.run_key][parsed.event_id] = parsed
        elif _same_content(same_batch, parsed):
            results[index] = ItemResult(index, DUPLICATE)
        else:
            results[index] = ItemResult(
                index,
                CONFLICT,
                f"events[{index}].event_id: {parsed.event_id} appears earlier in this batch "
                f"(events[{same_batch.index}]) with different content; that one is used",
            )

    return _store(agent, token, by_run, results)


def ingest_parsed(token: Token, events: list[ParsedEvent]) -> BatchOutcome:
    """Store events already validated by `parse_event` or `parse_mapped_event` (for importers
    that validate a whole file before writing any of it, such as the Temporal import). Each
    event's `index` must be its position in `events`, and no (run, event_id) may appear twice.
    Same guarantees and answers as `ingest_batch`."""
    results: list[ItemResult | None] = [None] * len(events)
    by_run: dict[tuple[str, str], dict[int, ParsedEvent]] = defaultdict(dict)
    for parsed in events:
        by_run[parsed.run_key][parsed.event_id] = parsed
    return _store(token.agent, token, by_run, results)


def _store(agent: Agent, token: Token, by_run: dict, results: list) -> BatchOutcome:
    runs: list[Run] = []
    if by_run:
        with transaction.atomic():
            locked = _lock_runs(agent, by_run)
            rows: list[EventRow] = []
            for key in sorted(by_run):
                run = locked[key]
                rows.extend(_classify_and_prepare(run, token, by_run[key], results))
                runs.append(run)
            insert_events(rows)  # one COPY for the whole batch
            for run in runs:
                run.save(update_fields=DERIVED_RUN_FIELDS)
            _announce(agent, locked, by_run, results)
        _touch_agent(agent)
    return BatchOutcome([r for r in results if r is not None], runs)


def _announce(agent: Agent, locked: dict, by_run: dict, results: list) -> None:
    """Send `events_stored` for each run with new events, then `batch_stored` once, inside the
    batch's transaction."""
    if not (events_stored.has_listeners() or batch_stored.has_listeners()):
        return
    stored = []
    for key in sorted(by_run):
        fresh = [
            parsed
            for parsed in by_run[key].values()
            if results[parsed.index] is not None and results[parsed.index].status == STORED
        ]
        if fresh:
            stored.append((locked[key], sorted(fresh, key=_by_event_id)))
    for run, fresh in stored:
        events_stored.send(sender=run, events=fresh)
    if stored:
        batch_stored.send(sender=agent, runs=stored)


def _by_event_id(parsed: ParsedEvent) -> int:
    return parsed.event_id


def _same_content(a: ParsedEvent, b: ParsedEvent) -> bool:
    return a.envelope == b.envelope and a.attributes_bytes == b.attributes_bytes


def _lock_runs(agent: Agent, by_run: dict) -> dict[tuple[str, str], Run]:
    """Find or create each run of the batch, then lock them all in primary-key order, the same
    order every batch uses, so two batches touching the same runs cannot deadlock.

    A run found by the insert can be gone by the time it is locked: retention deleted it (an
    old closed run) and committed in between. Its events are then stored in the run created
    anew, as they would be had they arrived just after the deletion (docs/governance.md,
    retention). The new row's key is larger than any before it, so locking it after the others
    keeps the order."""
    found: dict[tuple[str, str], Run] = {}
    missing = sorted(by_run)  # one insertion order for every batch: no deadlock between inserts
    for _ in range(RUN_ATTEMPTS):
        found.update(_insert_and_lock(agent, by_run, missing))
        missing = [key for key in missing if key not in found]
        if not missing:
            return found
    # Only a run re-created and deleted again, RUN_ATTEMPTS times within one batch, gets here.
    raise RuntimeError(f"runs deleted while this batch was being stored: {missing}")


RUN_ATTEMPTS = 3


def _insert_and_lock(agent: Agent, by_run: dict, keys: list) -> dict[tuple[str, str], Run]:
    new_runs = []
    for workflow_id, run_id in keys:
        events = by_run[(workflow_id, run_id)].values()
        new_runs.append(
            Run(
                namespace_id=agent.namespace_id,
                agent=agent,
                workflow_id=workflow_id,
                run_id=run_id,
                started_at=min(event.time for event in events),
            )
        )
    # ON CONFLICT DO NOTHING: a run created meanwhile by a concurrent batch is simply found.
    Run.objects.bulk_create(new_runs, ignore_conflicts=True)
    candidates = (
        Run.objects.select_for_update()
        .filter(
            namespace_id=agent.namespace_id,
            workflow_id__in={workflow_id for workflow_id, _ in keys},
            run_id__in={run_id for _, run_id in keys},
        )
        .order_by("pk")
    )
    wanted = set(keys)
    found = {}
    for run in candidates:
        key = (run.workflow_id, run.run_id)
        if key in wanted:
            if run.agent_id != agent.pk:
                raise RunOfAnotherAgent(*key)
            found[key] = run
    return found


def _classify_and_prepare(
    run: Run, token: Token, events: dict[int, ParsedEvent], results: list
) -> list[EventRow]:
    """Sort a run's events of the batch into duplicates, conflicts and new ones; prepare the
    new ones (and fill in the chain hashes of earlier ones they reach) and return their rows."""
    existing = {}
    if min(events) <= run.last_event_id:
        existing = {
            event_id: (salt, header)
            for event_id, salt, header in Event.objects.filter(
                run=run, event_id__in=list(events)
            ).values_list("event_id", "salt", "header")
        }
    now = timezone.now()
    fresh: list[ParsedEvent] = []
    for event_id in sorted(events):
        parsed = events[event_id]
        stored = existing.get(event_id)
        if stored is None:
            fresh.append(parsed)
            continue
        salt, header = stored
        if parsed.header_with_salt(salt) == header.encode():
            results[parsed.index] = ItemResult(parsed.index, DUPLICATE)
        else:
            results[parsed.index] = ItemResult(
                parsed.index,
                CONFLICT,
                f"events[{parsed.index}].event_id: {event_id} is already stored for this run "
                "with different content; the stored event is kept",
            )
    if not fresh:
        return []
    rows, late_hashes = prepare_events(run, token, fresh, now)
    for parsed in fresh:
        results[parsed.index] = ItemResult(parsed.index, STORED)
    if late_hashes:
        Event.objects.bulk_update(late_hashes, ["chain_hash"], batch_size=1000)
    return rows


# The run's fields that follow from its events, written with them in one transaction.
DERIVED_RUN_FIELDS = [
    "workflow_type", "status", "status_event_id", "started_at", "start_event_id",
    "closed_at", "event_count", "last_event_id", "contiguous_through", "head_hash",
    "received_seq", "events_with_secrets", "labels", "updated_at",
]


@dataclass(slots=True)
class EventRow:
    """An event as it will be stored. Plain slots, not a model instance: building a Django
    model per event cost about a fifth of ingest's time, and COPY needs only the values."""

    run: Run
    event_id: int
    type: str
    time: datetime
    time_text: str
    identity: str
    refs: dict
    attributes: str
    masked_attributes: str | None
    secret_findings: list | None
    salt: str
    header: str
    received_at: datetime
    received_seq: int
    token_id: int | None
    chain_hash: str = ""

    def as_model(self) -> Event:
        return Event(
            run_id=self.run.pk, event_id=self.event_id, type=self.type, time=self.time,
            time_text=self.time_text, identity=self.identity, refs=self.refs,
            attributes=self.attributes, masked_attributes=self.masked_attributes,
            secret_findings=self.secret_findings, salt=self.salt, header=self.header,
            chain_hash=self.chain_hash, received_at=self.received_at,
            received_seq=self.received_seq, token_id=self.token_id,
        )


def prepare_events(
    run: Run, token: Token, fresh: list[ParsedEvent], now
) -> tuple[list[EventRow], list[Event]]:
    """Build the rows of `fresh` (new events, in event_id order) as they will be stored, fold
    them into the run's derived fields, and extend the chain. Returns the new rows and the
    earlier-stored rows whose chain hash this batch filled in. Writes nothing."""
    # Whether events were stored beyond a gap before this batch: only then can filling the
    # gap pull earlier-stored events into the chain.
    stored_beyond_gap = run.last_event_id > run.contiguous_through
    rows = []
    headers: dict[int, bytes] = {}
    salts = chain.new_salts(len(fresh))
    for parsed, salt in zip(fresh, salts, strict=True):
        sealed = seal(parsed, salt)
        headers[parsed.event_id] = sealed.header
        run.received_seq += 1
        rows.append(
            EventRow(
                run=run,
                event_id=parsed.event_id,
                type=parsed.type,
                time=parsed.time,
                time_text=parsed.time_text,
                identity=parsed.identity or "",
                refs=parsed.refs,
                attributes=parsed.attributes_bytes.decode(),
                masked_attributes=(
                    None if sealed.masked_bytes is None else sealed.masked_bytes.decode()
                ),
                secret_findings=sealed.findings,
                salt=sealed.salt,
                header=sealed.header.decode(),
                received_at=now,
                received_seq=run.received_seq,
                token_id=token.pk,
            )
        )
        _apply_to_run(run, parsed, sealed.masked)
    late_hashes = _extend_chain(
        run, headers, {row.event_id: row for row in rows}, stored_beyond_gap=stored_beyond_gap
    )
    run.event_count += len(rows)
    run.updated_at = now
    return rows, late_hashes


def _apply_to_run(run: Run, event: ParsedEvent, masked: dict | None) -> None:
    """Fold one new event into the run's derived fields. Every rule here depends only on the
    set of events stored, never on their arrival order. `masked` is the event's attributes with
    secrets masked, or None when none were found."""
    run.last_event_id = max(run.last_event_id, event.event_id)
    if masked is not None:
        run.events_with_secrets += 1
    if event.type == "workflow.started":
        # Should a producer send several, the one with the lowest event id counts.
        if not run.start_event_id or event.event_id < run.start_event_id:
            run.start_event_id = event.event_id
            run.started_at = event.time
            run.workflow_type = event.workflow_type
            # Labels are shown to every viewer and filtered on: they are copied masked.
            source = masked if masked is not None else event.attributes
            run.labels = source.get("labels") or {}
    elif not run.start_event_id and event.time < run.started_at:
        run.started_at = event.time
    status = STATUS_EVENTS.get(event.type)
    if status is not None and event.event_id > run.status_event_id:
        run.status = status
        run.status_event_id = event.event_id
        run.closed_at = event.time if status in CLOSED_STATUSES else None


def _extend_chain(
    run: Run, headers: dict[int, bytes], new_rows: dict[int, EventRow], *, stored_beyond_gap: bool
) -> list[Event]:
    """Hash the contiguous prefix as far as it now reaches. New events get their chain hash
    before insert; events stored earlier beyond a gap that this batch fills are returned for
    an update."""
    next_id = run.contiguous_through + 1
    if next_id not in headers:
        return []
    waiting: dict[int, tuple[Event, bytes]] = {}
    if stored_beyond_gap:
        # Events stored earlier beyond the gap: they join the chain once it reaches them.
        for stored in (
            Event.objects.filter(run=run, event_id__gt=run.contiguous_through)
            .order_by("event_id")
            .only("pk", "event_id", "header")
            .iterator(chunk_size=2000)
        ):
            waiting[stored.event_id] = (stored, stored.header.encode())
    previous = run.head_hash or chain.GENESIS
    late: list[Event] = []
    while True:
        if next_id in new_rows:
            new_rows[next_id].chain_hash = previous = chain.link(previous, headers[next_id])
        elif next_id in waiting:
            stored, header = waiting[next_id]
            stored.chain_hash = previous = chain.link(previous, header)
            late.append(stored)
        else:
            break
        next_id += 1
    run.contiguous_through = next_id - 1
    run.head_hash = previous
    return late


_COPY_COLUMNS = (
    "run_id", "event_id", "type", "time", "time_text", "identity", "refs", "attributes",
    "masked_attributes", "secret_findings", "salt", "header", "chain_hash", "received_at",
    "received_seq", "token_id",
)


def insert_events(rows: list[EventRow]) -> None:
    if not rows:
        return
    if connection.vendor != "postgresql":
        Event.objects.bulk_create([row.as_model() for row in rows], batch_size=500)
        return
    # COPY is several times faster than a multi-row INSERT for a thousand-event batch; the
    # row lock taken above already rules out a concurrent insert of the same event ids.
    table = Event._meta.db_table
    sql = f"COPY {table} ({', '.join(_COPY_COLUMNS)}) FROM STDIN"
    # Times go as ISO 8601 text, which PostgreSQL reads as the same instant: psycopg's own
    # conversion of an aware datetime took half of the time of writing a row. A batch shares
    # one receipt time, written once.
    received_at = {}
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for row in rows:
            received = received_at.get(row.received_at)
            if received is None:
                received = received_at[row.received_at] = row.received_at.isoformat()
            copy.write_row(
                (
                    row.run.pk, row.event_id, row.type, row.time.isoformat(), row.time_text,
                    row.identity, orjson.dumps(row.refs).decode(), row.attributes,
                    row.masked_attributes,
                    None if row.secret_findings is None
                    else orjson.dumps(row.secret_findings).decode(),
                    row.salt, row.header, row.chain_hash, received, row.received_seq,
                    row.token_id,
                )
            )


def _touch_agent(agent: Agent) -> None:
    now = timezone.now()
    if agent.last_seen_at is None or now - agent.last_seen_at > LAST_SEEN_PRECISION:
        Agent.objects.filter(pk=agent.pk).update(last_seen_at=now)
        agent.last_seen_at = now
