"""Reading a namespace's governance findings: what the governance page, its CSV export and
code (tests, the reference agents' checks) call. `for_namespace` is the entry point.

Agent-level findings (no owner, no declared allow-list) are read live from the agents, since
an owner can be set at any moment; run-level findings are `Finding` rows written when events
were stored or when a workflow id was checked. Every query here is bounded by the namespace
and a time window and served by an index named in governance/models.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import Count, Q
from django.utils import timezone

from access.models import Agent, Namespace
from governance import counts, durability_checks
from governance.models import Finding, WorkflowCheck
from governance.vocabulary import DID_NOT_SURVIVE, RUN_RULES, Outcome, Rule
from history.models import Run


@dataclass
class AgentFinding:
    agent: Agent
    rule: str
    recent_runs: int  # runs of the agent started within the window

    @property
    def title(self) -> str:
        return Rule(self.rule).label


@dataclass
class InventoryRow:
    workflow_type: str
    counts: dict[str, int] = field(default_factory=dict)  # outcome -> workflow ids

    @property
    def interrupted(self) -> int:
        return sum(n for outcome, n in self.counts.items() if outcome != Outcome.NOT_INTERRUPTED)

    @property
    def did_not_survive(self) -> int:
        return sum(self.counts.get(outcome, 0) for outcome in DID_NOT_SURVIVE)


@dataclass
class Day:
    day: date
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class NamespaceFindings:
    namespace: Namespace
    since: datetime | None
    agent_findings: list[AgentFinding]
    counts: dict[str, int]  # run rule -> findings within the window
    days: list[Day]  # every day of the window, oldest first (empty without a window)
    inventory: list[InventoryRow]
    checks_pending: int  # workflow ids waiting for their durability check
    checks_bounded: int  # workflow ids whose last check stopped at its bounds

    def findings(self, rule: str = ""):
        """The run-level findings within the window, newest first (a lazy QuerySet)."""
        return (
            Finding.objects.of_namespace(self.namespace, since=self.since, rule=rule)
            .select_related("run", "agent")
        )

    def rules_found(self) -> set[str]:
        """Every rule with at least one finding: agent-level and run-level."""
        return {f.rule for f in self.agent_findings} | {r for r, n in self.counts.items() if n}

    @property
    def runs_without_owner(self) -> int:
        return sum(f.recent_runs for f in self.agent_findings
                   if f.rule == Rule.AGENT_WITHOUT_OWNER)


def for_namespace(namespace: Namespace, *, days: int | None = None,
                  refresh: bool = True) -> NamespaceFindings:
    """Everything the governance page shows for `namespace`: from midnight UTC `days` days ago
    (by Flightdeck's receipt of the events), or all time with None. `refresh` first runs the
    namespace's pending durability checks here and now (code and tests want findings up to
    date; the page does not wait for them and says how many are pending instead)."""
    if refresh:
        durability_checks.run_pending(namespace=namespace, limit=100_000)
    now = timezone.now()
    # From midnight (UTC) `days` days ago: the list and the per-day counts cover the same span.
    since = (datetime.combine((now - timedelta(days=days)).date(), time.min, tzinfo=UTC)
             if days else None)
    per_day = counts.per_day(namespace, since) if since else {}
    found = {rule: 0 for rule in RUN_RULES}
    if since is None:
        found.update(counts.totals(namespace))
    for day in per_day.values():
        for rule, n in day.items():
            found[rule] += n
    checks = WorkflowCheck.objects.filter(namespace=namespace).aggregate(
        pending=Count("id", filter=Q(due=True)), bounded=Count("id", filter=Q(bounded=True)),
    )
    return NamespaceFindings(
        namespace=namespace,
        since=since,
        agent_findings=agent_findings(namespace, since or now - timedelta(days=30)),
        counts=found,
        days=[Day(day, per_day.get(day, {})) for day in _days(since, now)] if since else [],
        inventory=inventory(namespace),
        checks_pending=checks["pending"],
        checks_bounded=checks["bounded"],
    )


def agent_findings(namespace: Namespace, since: datetime) -> list[AgentFinding]:
    """Agents without an owner, and agents that declare no allow-list, each with its number of
    runs started since `since` (two queries, whatever the number of runs)."""
    agents = list(Agent.objects.filter(namespace=namespace).order_by("name"))
    # By the keys: `agent.owner` would load the user or group, one query per agent.
    flagged = [(agent, Rule.AGENT_WITHOUT_OWNER) for agent in agents
               if agent.owner_user_id is None and agent.owner_group_id is None]
    flagged += [(agent, Rule.TOOLS_UNDECLARED) for agent in agents if not agent.allowed_tools]
    if not flagged:
        return []
    recent = dict(
        Run.objects.filter(agent__in={agent for agent, _ in flagged}, started_at__gte=since)
        .values_list("agent").annotate(n=Count("id")).values_list("agent", "n")
    )
    return [AgentFinding(agent, rule, recent.get(agent.pk, 0)) for agent, rule in flagged]


def inventory(namespace: Namespace) -> list[InventoryRow]:
    """Workflow types by what became of their workflow ids after an interruption."""
    rows: dict[str, InventoryRow] = {}
    for workflow_type, outcome, n in (
        WorkflowCheck.objects.filter(namespace=namespace, checked_at__isnull=False)
        .values_list("workflow_type", "outcome").annotate(n=Count("id"))
        .values_list("workflow_type", "outcome", "n")
    ):
        rows.setdefault(workflow_type, InventoryRow(workflow_type)).counts[outcome] = n
    return sorted(rows.values(), key=lambda row: (-row.did_not_survive, row.workflow_type))


def _days(since: datetime, now: datetime) -> list[date]:
    first, last = since.date(), now.date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]
