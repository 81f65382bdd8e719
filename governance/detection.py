"""Findings computed when events are stored: tool calls outside an agent's allow-list,
privileged tool calls without a granted approval, approval claims that contradict Flightdeck's
decision, and secrets exposed in attributes. docs/governance.md states each rule.

`on_events_stored` is connected to `history.signals.events_stored`, so it runs inside the ingest
transaction, after interventions' receiver (governance comes after interventions in
INSTALLED_APPS: an approval request opened by the same batch exists by then). Its work is one
savepoint: a failure is logged and never costs the agent its events. Each judgement is made
once per call, event or claim; storing the same finding again is a no-op.
"""

from __future__ import annotations

import logging
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


def on_events_stored(sender, events, **kwargs) -> None:
    run = sender
    try:
        with transaction.atomic():
            durability_checks.mark_due(run)
            # Ingest stamps the batch's events and the run with one time: the receipt.
            examine(run, events, received_at=run.updated_at)
    except Exception:
        log.exception("governance could not examine %d events of run %s", len(events), run.uuid)


def examine(run: Run, events, *, received_at: datetime) -> None:
    """Judge a run's newly stored `events`, received by Flightdeck at `received_at`. A batch
    with nothing to judge costs no query; its findings cost three (the ones stored already,
    the insert, the counts)."""
    findings: list[Finding] = []
    calls = calls_in(events)
    if calls:
        findings += _judge_tool_calls(run, calls, received_at)
    if run.events_with_secrets:
        findings += _find_secret_exposures(run, [event.event_id for event in events])
    claims = [event for event in events if event.type in CLAIMS]
    if claims:
        findings += _judge_claims(run, claims, received_at)
    if findings:
        _store(run, findings)


def _store(run: Run, findings: list[Finding]) -> None:
    """Store the findings not stored before (a call seen again in a later batch, a replayed
    batch) and count them. The run's row lock, held by ingest (and by a backfill), keeps any
    other writer of this run's ingest-time findings out meanwhile."""
    fresh = {(f.rule, f.key): f for f in findings}
    for stored in Finding.objects.filter(
        run=run, key__in={key for _, key in fresh}
    ).values_list("rule", "key"):
        fresh.pop(stored, None)
    for finding in fresh.values():
        finding.namespace_id, finding.run_id, finding.agent_id = (
            run.namespace_id, run.pk, run.agent_id
        )
    Finding.objects.bulk_create(fresh.values())
    counts.apply(counts.of(fresh.values()))


def shown(value: str) -> str:
    """An agent-supplied name as every member may see it: masked if it holds a secret."""
    _, masked = scan({"value": value})
    return masked["value"] if masked is not None else value


# --- tool calls ------------------------------------------------------------------------------


def _judge_tool_calls(run: Run, calls: list[ToolCall], received_at: datetime) -> list[Finding]:
    agent, tools, every_tool = agent_scope(run.agent_id, {call.tool for call in calls})
    findings = []
    declared = set(agent.allowed_tools or [])
    for call in calls:
        if declared and call.tool not in declared:
            tool = shown(call.tool)
            findings.append(Finding(
                rule=Rule.TOOL_OUTSIDE_ALLOW_LIST, key=f"call:{call.call_id}",
                event_id=call.event_id, event_ids=[call.event_id], subject=tool,
                summary=f"called {tool}, which is not in {agent.name}'s allow-list",
                detail={"tool": tool, "allowed_tools": sorted(declared)},
                received_at=received_at,
            ))
    privileged = [call for call in calls if every_tool or call.tool in tools]
    if privileged:
        findings += _judge_privileged(run, privileged, received_at)
    return findings


def agent_scope(agent_id: int, called: set[str]) -> tuple[Agent, set[str], bool]:
    """The agent, which of the `called` tools have an approval policy for it, and whether
    every tool is privileged for it (it has a policy for `*`). One query: a batch calls few
    distinct tools, each asked as an EXISTS.

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


def _judge_privileged(run: Run, calls: list[ToolCall], received_at: datetime) -> list[Finding]:
    """Each call not judged before takes the earliest unused approval that covers it; a call
    with none is a finding. Three queries per batch, whatever the number of calls; the run's
    row lock (held by ingest) keeps two batches of the run from taking the same approval."""
    judged = set(
        PrivilegedCall.objects.filter(
            run=run, call_event_id__in=[call.call_id for call in calls]
        ).values_list("call_event_id", flat=True)
    )
    calls = [call for call in calls if call.call_id not in judged]
    if not calls:
        return []
    available = list(
        covering_approvals(run, {call.tool for call in calls}, received_at)
    )
    findings, rows = [], []
    for call in calls:
        approval = next((q for q in available
                         if q.action == call.tool and q.event_id < call.call_id), None)
        if approval is not None:
            available.remove(approval)
        rows.append(PrivilegedCall(run=run, call_event_id=call.call_id, tool=call.tool,
                                   approval=approval, judged_at=received_at))
        if approval is None:
            tool = shown(call.tool)
            findings.append(Finding(
                rule=Rule.PRIVILEGED_WITHOUT_APPROVAL, key=f"call:{call.call_id}",
                event_id=call.event_id, event_ids=[call.event_id], subject=tool,
                summary=f"called {tool} without an approval granted by Flightdeck before the "
                        "call",
                detail={"tool": tool}, received_at=received_at,
            ))
    PrivilegedCall.objects.bulk_create(rows)
    return findings


def covering_approvals(run: Run, tools: set[str], received_at: datetime):
    """The run's approved requests for these tools, decided before Flightdeck received the
    calls and covering no call yet, earliest requested first."""
    return (
        ApprovalRequest.objects.filter(
            run=run, action__in=tools, state=ApprovalState.APPROVED, decided_at__lte=received_at,
        )
        .exclude(pk__in=PrivilegedCall.objects.filter(run=run, approval__isnull=False)
                 .values("approval_id"))
        .order_by("event_id")
    )


# --- secrets -----------------------------------------------------------------------------------


def _find_secret_exposures(run: Run, event_ids: list[int]) -> list[Finding]:
    exposed = Event.objects.filter(
        run=run, event_id__in=event_ids, secret_findings__isnull=False
    ).values_list("event_id", "type", "received_at", "secret_findings")
    findings = []
    for event_id, event_type, received_at, secret_findings in exposed:
        if not secret_findings:
            continue
        # Rule and JSON Pointer only: history.secrets never stores the value, nor do we.
        where = [{"rule": f["rule"], "path": f["path"]} for f in secret_findings][:20]
        rules = sorted({f["rule"] for f in where})
        findings.append(Finding(
            rule=Rule.SECRET_EXPOSURE, key=f"event:{event_id}", event_id=event_id,
            event_ids=[event_id], subject=", ".join(rules)[:255],
            summary=f"{event_type} carries "
                    + "; ".join(f"{f['rule']} at {f['path'] or '/'}" for f in where[:5])
                    + (f" and {len(where) - 5} more" if len(where) > 5 else ""),
            detail={"findings": where}, received_at=received_at,
        ))
    return findings


# --- approval claims -----------------------------------------------------------------------------


def _judge_claims(run: Run, claims, received_at: datetime) -> list[Finding]:
    wanted = {_request_id(claim) for claim in claims}
    requests = {
        request.request_id: request
        for request in ApprovalRequest.objects.filter(run=run, request_id__in=wanted)
    }
    findings = []
    for claim in claims:
        claimed = claim.type.split(".", 1)[1]  # granted, rejected, expired
        request_id = _request_id(claim)
        request = requests.get(request_id)
        if request is not None and not claim_contradicts(request, claimed):
            continue
        decided = request.state if request is not None else None
        what = (f"Flightdeck's decision is {decided}" if decided and decided != "pending"
                else "Flightdeck had not decided it" if decided
                else "Flightdeck has no such request")
        findings.append(Finding(
            rule=Rule.CLAIM_CONTRADICTS_DECISION, key=f"event:{claim.event_id}",
            event_id=claim.event_id,
            event_ids=sorted({claim.event_id, *([request.event_id] if request else [])}),
            subject=shown(request.action) if request else "",
            summary=f"claims request {shown(request_id)[:100]!r} was {claimed}; {what}",
            detail={"claimed": claimed, "decided": decided, "request_id": shown(request_id)},
            received_at=received_at,
        ))
    return findings


def _request_id(claim) -> str:
    # As interventions.approvals stores and looks it up (NUL cannot be stored).
    return str(claim.attributes.get("request_id") or "").replace("\x00", "\ufffd")
