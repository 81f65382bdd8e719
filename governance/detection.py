"""Findings computed when events are stored: tool calls outside an agent's allow-list,
privileged tool calls without a granted approval, approval claims that contradict Flightdeck's
decision, and secrets exposed in attributes. docs/governance.md states each rule.

`on_batch_stored` is connected to `history.signals.batch_stored`, so it runs inside the ingest
transaction, once per batch, after every run's `events_stored` (interventions' receiver among
them: an approval request opened by the same batch exists by then). Its work is one savepoint
for the whole batch, and each query serves every run of the batch: the cost of governance is
round trips per batch, not per run or event. A failure is logged and never costs the agent its
events. Each judgement is made once per call, event or claim; storing the same finding again
is a no-op.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import orjson
from django.db import transaction
from django.db.models import Exists, OuterRef

from access.models import Agent
from governance import counts, durability_checks
from governance.calls import ToolCall, calls_in
from governance.models import Finding, PrivilegedCall
from governance.vocabulary import Rule
from history.models import Event, Run
from history.secrets import scan
from interventions.approvals import claim_contradicts
from interventions.models import ApprovalPolicy, ApprovalRequest
from interventions.vocabulary import ApprovalState

log = logging.getLogger(__name__)

CLAIMS = ("approval.granted", "approval.rejected", "approval.expired")


@dataclass(frozen=True)
class StoredEvent:
    """What detection reads of an event: a ParsedEvent at ingest, or a stored row (backfill)."""

    event_id: int
    type: str
    refs: dict
    attributes: dict

    @classmethod
    def of(cls, event: Event) -> StoredEvent:
        return cls(event.event_id, event.type, event.refs or {}, orjson.loads(event.attributes))


def on_batch_stored(sender, runs, **kwargs) -> None:
    agent = sender
    # Two savepoints: a failure in detection must not also lose the durability check's mark.
    try:
        with transaction.atomic():
            durability_checks.mark_due_all([run for run, _ in runs])
    except Exception:
        log.exception("governance could not mark %d runs' workflow ids due", len(runs))
    try:
        with transaction.atomic():
            # Ingest stamps the batch's events and runs with one time: the receipt.
            examine_batch(agent, runs, received_at=runs[0][0].updated_at)
    except Exception:
        log.exception("governance could not examine a batch of %d runs (first %s)",
                      len(runs), runs[0][0].uuid if runs else None)


def examine(run: Run, events, *, received_at: datetime) -> None:
    """Judge one run's newly stored `events` (a backfill replays a run's batches so)."""
    examine_batch(run.agent, [(run, events)], received_at=received_at)


def examine_batch(agent: Agent, runs: list, *, received_at: datetime) -> None:
    """Judge the newly stored events of `runs` ([(run, events)], every run `agent`'s),
    received by Flightdeck at `received_at`. A batch with nothing to judge costs no query;
    each kind of judgement costs a fixed number of queries for the whole batch, and its
    findings three (the ones stored already, the insert, the counts)."""
    findings: list[Finding] = []
    calls = {run: found for run, events in runs if (found := calls_in(events))}
    if calls:
        findings += _judge_tool_calls(agent, calls, received_at)
    exposed = {run: [event.event_id for event in events]
               for run, events in runs if run.events_with_secrets}
    if exposed:
        findings += _find_secret_exposures(exposed)
    claims = {run: found for run, events in runs
              if (found := [event for event in events if event.type in CLAIMS])}
    if claims:
        findings += _judge_claims(claims, received_at)
    if findings:
        _store(findings)


def _store(findings: list[Finding]) -> None:
    """Store the findings not stored before (a call seen again in a later batch, a replayed
    batch) and count them. The runs' row locks, held by ingest (and by a backfill), keep any
    other writer of these runs' ingest-time findings out meanwhile."""
    fresh = {(f.run_id, f.rule, f.key): f for f in findings}
    for stored in Finding.objects.filter(
        run_id__in={f.run_id for f in findings}, key__in={f.key for f in findings}
    ).values_list("run_id", "rule", "key"):
        fresh.pop(stored, None)
    Finding.objects.bulk_create(fresh.values())
    counts.apply(counts.of(fresh.values()))


def _finding(run: Run, **fields) -> Finding:
    return Finding(namespace_id=run.namespace_id, run_id=run.pk, agent_id=run.agent_id,
                   **fields)


def shown(value: str) -> str:
    """An agent-supplied name as every member may see it: masked if it holds a secret."""
    _, masked = scan({"value": value})
    return masked["value"] if masked is not None else value


# --- tool calls ------------------------------------------------------------------------------


def _judge_tool_calls(agent: Agent, calls: dict[Run, list[ToolCall]],
                      received_at: datetime) -> list[Finding]:
    agent, tools, every_tool = agent_scope(
        agent.pk, {call.tool for run_calls in calls.values() for call in run_calls}
    )
    findings = []
    declared = set(agent.allowed_tools or [])
    privileged: dict[Run, list[ToolCall]] = {}
    for run, run_calls in calls.items():
        for call in run_calls:
            if declared and call.tool not in declared:
                tool = shown(call.tool)
                findings.append(_finding(
                    run, rule=Rule.TOOL_OUTSIDE_ALLOW_LIST, key=f"call:{call.call_id}",
                    event_id=call.event_id, event_ids=[call.event_id], subject=tool,
                    summary=f"called {tool}, which is not in {agent.name}'s allow-list",
                    detail={"tool": tool, "allowed_tools": sorted(declared)},
                    received_at=received_at,
                ))
            if every_tool or call.tool in tools:
                privileged.setdefault(run, []).append(call)
    if privileged:
        findings += _judge_privileged(privileged, received_at)
    return findings


def agent_scope(agent_id: int, called: set[str]) -> tuple[Agent, set[str], bool]:
    """The agent as it stands now (its allow-list: the sender of a batch may have been loaded
    long before, as a Temporal follow session's is), which of the `called` tools have an
    approval policy for it, and whether every tool is privileged for it (it has a policy for
    `*`). One query for the batch: it calls few distinct tools, each asked as an EXISTS.

    The agent's `privileged` flag ("calls for closer review") does not make its tools
    privileged: approvals are asked by the policies (`effective_bar`), and an agent marked
    privileged because one of its tools is (as bootstrap_demo marks the support agent) would
    otherwise have every search and email flagged."""
    called = sorted(called)
    policies = ApprovalPolicy.objects.filter(agent=OuterRef("pk"))
    agent = Agent.objects.annotate(
        any_tool=Exists(policies.filter(tool=ApprovalPolicy.ANY_TOOL)),
        **{f"tool_{n}": Exists(policies.filter(tool=tool)) for n, tool in enumerate(called)},
    ).get(pk=agent_id)
    tools = {tool for n, tool in enumerate(called) if getattr(agent, f"tool_{n}")}
    return agent, tools, agent.any_tool


def _judge_privileged(calls: dict[Run, list[ToolCall]],
                      received_at: datetime) -> list[Finding]:
    """Each call not judged before takes the earliest unused approval of its run that covers
    it; a call with none is a finding. Three queries per batch, whatever the number of runs
    and calls; the runs' row locks (held by ingest) keep two batches of a run from taking the
    same approval."""
    judged = set(
        PrivilegedCall.objects.filter(
            run__in=list(calls),
            call_event_id__in={call.call_id for run_calls in calls.values()
                               for call in run_calls},
        ).values_list("run_id", "call_event_id")
    )
    calls = {run: fresh for run, run_calls in calls.items()
             if (fresh := [c for c in run_calls if (run.pk, c.call_id) not in judged])}
    if not calls:
        return []
    available: dict[int, list[ApprovalRequest]] = defaultdict(list)
    for approval in covering_approvals(
        list(calls), {call.tool for run_calls in calls.values() for call in run_calls},
        received_at,
    ):
        available[approval.run_id].append(approval)
    findings, rows = [], []
    for run, run_calls in calls.items():
        for call in run_calls:
            approval = next((q for q in available[run.pk]
                             if q.action == call.tool and q.event_id < call.call_id), None)
            if approval is not None:
                available[run.pk].remove(approval)
            rows.append(PrivilegedCall(run=run, call_event_id=call.call_id, tool=call.tool,
                                       approval=approval, judged_at=received_at))
            if approval is None:
                tool = shown(call.tool)
                findings.append(_finding(
                    run, rule=Rule.PRIVILEGED_WITHOUT_APPROVAL, key=f"call:{call.call_id}",
                    event_id=call.event_id, event_ids=[call.event_id], subject=tool,
                    summary=f"called {tool} without an approval granted by Flightdeck before "
                            "the call",
                    detail={"tool": tool}, received_at=received_at,
                ))
    PrivilegedCall.objects.bulk_create(rows)
    return findings


def covering_approvals(runs: list[Run], tools: set[str], received_at: datetime):
    """The runs' approved requests for these tools, decided before Flightdeck received the
    calls and covering no call yet, earliest requested first."""
    return (
        ApprovalRequest.objects.filter(
            run__in=runs, action__in=tools, state=ApprovalState.APPROVED,
            decided_at__lte=received_at,
        )
        .exclude(pk__in=PrivilegedCall.objects.filter(run__in=runs, approval__isnull=False)
                 .values("approval_id"))
        .order_by("event_id")
    )


# --- secrets -----------------------------------------------------------------------------------


def _find_secret_exposures(exposed: dict[Run, list[int]]) -> list[Finding]:
    """Findings for the batch's events that ingest's scan flagged, of the runs that have any
    (`exposed`: run -> the batch's event ids). One query."""
    by_pk = {run.pk: run for run in exposed}
    wanted = {(run.pk, event_id) for run, event_ids in exposed.items() for event_id in event_ids}
    flagged = Event.objects.filter(
        run__in=list(exposed), event_id__in={event_id for _, event_id in wanted},
        secret_findings__isnull=False,
    ).values_list("run_id", "event_id", "type", "received_at", "secret_findings")
    findings = []
    for run_pk, event_id, event_type, received_at, secret_findings in flagged:
        if not secret_findings or (run_pk, event_id) not in wanted:
            continue
        # Rule and JSON Pointer only: history.secrets never stores the value, nor do we.
        where = [{"rule": f["rule"], "path": f["path"]} for f in secret_findings][:20]
        rules = sorted({f["rule"] for f in where})
        findings.append(_finding(
            by_pk[run_pk], rule=Rule.SECRET_EXPOSURE, key=f"event:{event_id}",
            event_id=event_id, event_ids=[event_id], subject=", ".join(rules)[:255],
            summary=f"{event_type} carries "
                    + "; ".join(f"{f['rule']} at {f['path'] or '/'}" for f in where[:5])
                    + (f" and {len(where) - 5} more" if len(where) > 5 else ""),
            detail={"findings": where}, received_at=received_at,
        ))
    return findings


# --- approval claims -----------------------------------------------------------------------------


def _judge_claims(claims: dict[Run, list], received_at: datetime) -> list[Finding]:
    """Each claim against Flightdeck's record of its run's request. One query per batch."""
    requests = {
        (request.run_id, request.request_id): request
        for request in ApprovalRequest.objects.filter(
            run__in=list(claims),
            request_id__in={_request_id(claim) for run_claims in claims.values()
                            for claim in run_claims},
        )
    }
    findings = []
    for run, run_claims in claims.items():
        for claim in run_claims:
            claimed = claim.type.split(".", 1)[1]  # granted, rejected, expired
            request_id = _request_id(claim)
            request = requests.get((run.pk, request_id))
            if request is not None and not claim_contradicts(request, claimed):
                continue
            decided = request.state if request is not None else None
            what = (f"Flightdeck's decision is {decided}" if decided and decided != "pending"
                    else "Flightdeck had not decided it" if decided
                    else "Flightdeck has no such request")
            findings.append(_finding(
                run, rule=Rule.CLAIM_CONTRADICTS_DECISION, key=f"event:{claim.event_id}",
                event_id=claim.event_id,
                event_ids=sorted({claim.event_id, *([request.event_id] if request else [])}),
                subject=shown(request.action) if request else "",
                summary=f"claims request {shown(request_id)[:100]!r} was {claimed}; {what}",
                detail={"claimed": claimed, "decided": decided,
                        "request_id": shown(request_id)},
                received_at=received_at,
            ))
    return findings


def _request_id(claim) -> str:
    # As interventions.approvals stores and looks it up (NUL cannot be stored).
    return str(claim.attributes.get("request_id") or "").replace("\x00", "\ufffd")
