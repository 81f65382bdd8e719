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
from django.utils import timezone

from governance import durability_checks
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
            examine(run, events, received_at=timezone.now())
    except Exception:
        log.exception("governance could not examine %d events of run %s", len(events), run.uuid)


def examine(run: Run, events, *, received_at: datetime) -> None:
    """Judge a run's newly stored `events`, received by Flightdeck at `received_at`."""
    calls = calls_in(run, events)
    if calls:
        _judge_tool_calls(run, calls, received_at)
    if run.events_with_secrets:
        _find_secret_exposures(run, [event.event_id for event in events])
    claims = [event for event in events if event.type in CLAIMS]
    if claims:
        _judge_claims(run, claims, received_at)


def _store(run: Run, findings: list[Finding]) -> None:
    for finding in findings:
        finding.namespace_id, finding.run_id, finding.agent_id = (
            run.namespace_id, run.pk, run.agent_id
        )
    Finding.objects.bulk_create(findings, ignore_conflicts=True)


def shown(value: str) -> str:
    """An agent-supplied name as every member may see it: masked if it holds a secret."""
    _, masked = scan({"value": value})
    return masked["value"] if masked is not None else value


# --- tool calls ------------------------------------------------------------------------------


def _judge_tool_calls(run: Run, calls: list[ToolCall], received_at: datetime) -> None:
    agent = run.agent
    findings = []
    declared = set(agent.allowed_tools or [])
    if declared:
        findings += [
            Finding(
                rule=Rule.TOOL_OUTSIDE_ALLOW_LIST, key=f"call:{call.call_id}",
                event_id=call.event_id, event_ids=[call.event_id], subject=shown(call.tool),
                summary=f"called {shown(call.tool)}, which is not in {agent.name}'s allow-list",
                detail={"tool": shown(call.tool), "allowed_tools": sorted(declared)},
                received_at=received_at,
            )
            for call in calls if call.tool not in declared
        ]
    privileged = [call for call in calls if is_privileged(agent, call.tool)]
    if privileged:
        findings += _judge_privileged(run, privileged, received_at)
    _store(run, findings)


def privileged_tools(agent) -> tuple[set[str], bool]:
    """(tools with an approval policy for this agent, whether every tool is privileged): every
    tool is when the agent is marked privileged or has a policy for `*`."""
    tools = set(ApprovalPolicy.objects.filter(agent=agent).values_list("tool", flat=True))
    return tools, agent.privileged or ApprovalPolicy.ANY_TOOL in tools


def is_privileged(agent, tool: str) -> bool:
    # Memoised on the agent object for the batch: one policy query per batch, not per call.
    cached = getattr(agent, "_governance_privileged", None)
    if cached is None:
        cached = agent._governance_privileged = privileged_tools(agent)
    tools, every_tool = cached
    return every_tool or tool in tools


def _judge_privileged(run: Run, calls: list[ToolCall], received_at: datetime) -> list[Finding]:
    """Each call not judged before takes the earliest unused approval that covers it; a call
    with none is a finding. The run's row lock (held by ingest) orders concurrent batches."""
    judged = set(
        PrivilegedCall.objects.filter(
            run=run, call_event_id__in=[call.call_id for call in calls]
        ).values_list("call_event_id", flat=True)
    )
    findings = []
    for call in calls:
        if call.call_id in judged:
            continue
        approval = covering_approval(run, call, received_at)
        PrivilegedCall.objects.create(run=run, call_event_id=call.call_id, tool=call.tool,
                                      approval=approval, judged_at=received_at)
        if approval is None:
            findings.append(Finding(
                rule=Rule.PRIVILEGED_WITHOUT_APPROVAL, key=f"call:{call.call_id}",
                event_id=call.event_id, event_ids=[call.event_id], subject=shown(call.tool),
                summary=f"called {shown(call.tool)} without an approval granted by Flightdeck "
                        "before the call",
                detail={"tool": shown(call.tool)}, received_at=received_at,
            ))
    return findings


def covering_approval(run: Run, call: ToolCall, received_at: datetime):
    """An approved request of this run for this tool, requested earlier in the run's own
    sequence, decided before Flightdeck received the call, and covering no other call."""
    return (
        ApprovalRequest.objects.filter(
            run=run, action=call.tool, state=ApprovalState.APPROVED,
            event_id__lt=call.call_id, decided_at__lte=received_at,
        )
        .exclude(pk__in=PrivilegedCall.objects.filter(approval__isnull=False).values("approval"))
        .order_by("event_id")
        .first()
    )


# --- secrets -----------------------------------------------------------------------------------


def _find_secret_exposures(run: Run, event_ids: list[int]) -> None:
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
    _store(run, findings)


# --- approval claims -----------------------------------------------------------------------------


def _judge_claims(run: Run, claims, received_at: datetime) -> None:
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
    _store(run, findings)


def _request_id(claim) -> str:
    # As interventions.approvals stores and looks it up (NUL cannot be stored).
    return str(claim.attributes.get("request_id") or "").replace("\x00", "\ufffd")
