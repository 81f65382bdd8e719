"""Durability findings for a run, by the rules in docs/durability.md:

- gaps: event ids missing below the highest one received;
- redone work: two completions of the same unit of work, within the run or across runs of its
  workflow id;
- restart from scratch: this run repeats completions of an earlier run of the same workflow id
  that ended without completing.

A unit of work is named by the activity's `activity_key` (on the completion, or on the
`activity.scheduled` event it refers to); without one, by its `activity_type` and a SHA-256 of
its canonical `input`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import orjson
from django.core.cache import cache
from django.db.models import Count, Max, Sum

from history import chain
from history.models import Event, Run
from history.vocabulary import RunStatus

# Analysing more than this many activity events at once would make the panel slow to open;
# past it the panel says it stopped instead of guessing.
MAX_ACTIVITY_EVENTS = 200_000
CACHE_SECONDS = 600
UNFINISHED = {
    RunStatus.FAILED,
    RunStatus.CANCELLED,
    RunStatus.TERMINATED,
    RunStatus.TIMED_OUT,
}


@dataclass
class Completion:
    run: Run
    event_id: int
    unit: str
    label: str


TITLES = {
    "gap": "Gap",
    "redone_work": "Redone work",
    "restart_from_scratch": "Restart from scratch",
}


@dataclass
class Finding:
    rule: str  # gap, redone_work, restart_from_scratch
    summary: str
    links: list[tuple[Run, int]] = field(default_factory=list)

    @property
    def title(self) -> str:
        return TITLES[self.rule]


@dataclass
class Report:
    findings: list[Finding]
    truncated: bool = False


def unit_of_work(completion: dict, scheduled: dict | None) -> tuple[str, str] | None:
    """(unit key, readable label) of an activity completion, or None when it names nothing."""
    for attrs in (completion, scheduled or {}):
        key = attrs.get("activity_key")
        if isinstance(key, str) and key:
            return f"key:{key}", key
    activity_type = completion.get("activity_type") or (scheduled or {}).get("activity_type")
    if not activity_type:
        return None
    payload = completion.get("input", (scheduled or {}).get("input"))
    try:
        digest = hashlib.sha256(chain.canonical(payload)).hexdigest()
    except (TypeError, orjson.JSONEncodeError):
        return None
    return f"input:{activity_type}:{digest}", f"{activity_type} (same input)"


def completions_of(runs: list[Run]) -> tuple[list[Completion], bool]:
    by_pk = {run.pk: run for run in runs}
    events = (
        Event.objects.filter(
            run__in=runs, type__in=("activity.scheduled", "activity.completed")
        )
        .order_by("run_id", "event_id")
        .values_list("run_id", "event_id", "type", "attributes", "masked_attributes", "refs")
    )
    # Units are told apart by the raw values (two different hidden keys stay two units), but
    # every label shown comes from the masked form: the panel is for every viewer.
    scheduled: dict[tuple[int, int], tuple[dict, dict]] = {}
    found: list[Completion] = []
    for count, (run_pk, event_id, event_type, attributes, masked, refs) in enumerate(
        events.iterator(chunk_size=2000)
    ):
        if count >= MAX_ACTIVITY_EVENTS:
            return found, True
        raw = orjson.loads(attributes)
        shown = raw if masked is None else orjson.loads(masked)
        if event_type == "activity.scheduled":
            scheduled[(run_pk, event_id)] = (raw, shown)
            continue
        ref = (refs or {}).get("scheduled")
        raw_scheduled, shown_scheduled = scheduled.get((run_pk, ref), (None, None))
        unit = unit_of_work(raw, raw_scheduled)
        if unit is not None:
            label = unit_of_work(shown, shown_scheduled)
            found.append(Completion(by_pk[run_pk], event_id, unit[0], label[1] if label else ""))
    return found, False


def analyse(run: Run) -> Report:
    siblings = list(
        Run.objects.filter(namespace_id=run.namespace_id, workflow_id=run.workflow_id)
        .order_by("started_at", "pk")
    )
    completions, truncated = completions_of(siblings)
    by_unit = _by_unit(completions)
    findings = gap_findings(run) + _unit_findings(run, siblings, list(by_unit.values()))
    return Report(findings=findings, truncated=truncated)


def analyse_workflow(runs: list[Run]) -> tuple[dict[int, list[Finding]], bool]:
    """The findings of every run in `runs` (runs of one workflow id in one namespace, ordered
    by start), as `analyse` gives them for each, from one reading of their activity events:
    linear in the events, where calling `analyse` on each run would read them once per run.
    Returns ({run pk: findings}, truncated)."""
    completions, truncated = completions_of(runs)
    units_of_run: dict[int, list[list[Completion]]] = {}
    for same in _by_unit(completions).values():
        for run_pk in dict.fromkeys(c.run.pk for c in same):
            units_of_run.setdefault(run_pk, []).append(same)
    return {
        run.pk: gap_findings(run) + _unit_findings(run, runs, units_of_run.get(run.pk, []))
        for run in runs
    }, truncated


def gap_findings(run: Run) -> list[Finding]:
    findings = []
    for first, last in run.missing_ranges():
        span = f"event {first}" if first == last else f"events {first} to {last}"
        findings.append(Finding("gap", f"{span} not received", [(run, first - 1)]))
    return findings


def _by_unit(completions: list[Completion]) -> dict[str, list[Completion]]:
    by_unit: dict[str, list[Completion]] = {}
    for completion in completions:
        by_unit.setdefault(completion.unit, []).append(completion)
    return by_unit


def _unit_findings(run: Run, siblings: list[Run], units: list[list[Completion]]) -> list[Finding]:
    """Redone work and restarts from scratch of `run`, from the completions of each unit of
    work (in first-seen order) among its workflow id's runs."""
    findings: list[Finding] = []
    restarted_from: dict[int, list[Completion]] = {}
    for same in units:
        if len(same) < 2 or not any(c.run.pk == run.pk for c in same):
            continue
        ours = [c for c in same if c.run.pk == run.pk]
        theirs = [c for c in same if c.run.pk != run.pk]
        if len(ours) > 1:
            findings.append(
                Finding(
                    "redone_work",
                    f"{ours[0].label} completed {len(ours)} times in this run",
                    [(c.run, c.event_id) for c in ours],
                )
            )
        for other in theirs:
            if _earlier_unfinished(other.run, run):
                restarted_from.setdefault(other.run.pk, []).append(ours[0])
            else:
                findings.append(
                    Finding(
                        "redone_work",
                        f"{ours[0].label} also completed in run {other.run.run_id}",
                        [(ours[0].run, ours[0].event_id), (other.run, other.event_id)],
                    )
                )
    for other_pk, repeated in restarted_from.items():
        other = next(s for s in siblings if s.pk == other_pk)
        findings.append(
            Finding(
                "restart_from_scratch",
                f"repeats {len(repeated)} completed activities of run {other.run_id}, which "
                f"ended {other.status} without completing",
                [(c.run, c.event_id) for c in repeated[:20]],
            )
        )
    return findings


def _earlier_unfinished(other: Run, run: Run) -> bool:
    """Whether `other` started no later than `run` and ended without completing."""
    return (
        other.pk != run.pk and other.started_at <= run.started_at and other.status in UNFINISHED
    )


def cached_analysis(run: Run) -> Report:
    """`analyse`, cached until this run or another run of its workflow id changes. The panel
    loads with every run page, and a long history takes a few hundred milliseconds to read."""
    state = Run.objects.filter(
        namespace_id=run.namespace_id, workflow_id=run.workflow_id
    ).aggregate(runs=Count("pk"), events=Sum("event_count"), changed=Max("updated_at"))
    changed = state["changed"].isoformat() if state["changed"] else ""
    key = f"durability:{run.pk}:{state['runs']}:{state['events']}:{changed}:{run.status}"
    report = cache.get(key)
    if report is None:
        report = analyse(run)
        cache.set(key, report, timeout=CACHE_SECONDS)
    return report
