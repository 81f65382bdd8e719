"""Pages that compose several apps: the run page and the agents inventory."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.decorators import login_required
from django.db.models import Count, Max, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from access.models import Agent, Namespace, Token
from access.roles import Capability
from history.access import get_run_for
from history.models import Run
from history.views import history_region, run_header, run_waterfall
from history.vocabulary import RunStatus
from interventions.timeline import marks_between
from interventions.views import commands_region


@login_required
@require_GET
def run_page(request: HttpRequest, run_uuid) -> HttpResponse:
    """A run: header, commands, timeline, history, live tail and durability panel. The
    interventions app's controls and records are composed in here, and its commands and
    approval requests merged onto the timeline by time, so `history` never knows of them."""
    run = get_run_for(request.user, run_uuid)
    history = history_region(request, run)
    # The page serves its history region alone too (STYLE 5), for htmx requests aimed at it.
    if request.htmx and request.htmx.target == "history":
        return render(request, "history/run_parts.html#history", history)
    context = {
        **history,
        **run_header(run),
        **commands_region(request, run),
        **run_waterfall(run, history, marks=marks_between(run, *_page_span(run, history))),
        "tail_seq": run.received_seq,
        # A closed run with gaps stays live: a late event may still fill them.
        "is_open": not run.is_closed or run.has_gaps,
    }
    return render(request, "dashboard/run.html", context)


def _page_span(run: Run, history: dict) -> tuple[datetime, datetime]:
    """The time the history page shown covers: from the run's start (or the page's first
    event) to now (or, with more pages after it, its last event). Records outside it are left
    off its timeline: they would squeeze its bars into a sliver."""
    times = [event.time for event in history["events"]]
    if not times:
        return run.started_at, timezone.now()
    start = min([*times, run.started_at]) if history["is_first_page"] else min(times)
    end = max(times) if history["next_url"] else timezone.now()
    return start, end


@login_required
@require_GET
def agents_page(request: HttpRequest) -> HttpResponse:
    """Every agent the user may see, per namespace, with ownership, tokens and run counts.
    Agents with no owner come first: they are the ones to fix."""
    namespaces = list(Namespace.objects.visible_to(request.user))
    agents = list(
        Agent.objects.filter(namespace__in=namespaces)
        .select_related("namespace", "owner_user", "owner_group")
        .order_by("namespace__slug", "name")
    )
    runs: dict[int, dict[str, int]] = {}
    for agent_id, status, count in (
        Run.objects.filter(agent__in=agents)
        .order_by()
        .values_list("agent_id", "status")
        .annotate(n=Count("pk"))
    ):
        runs.setdefault(agent_id, {})[status] = count
    tokens = {
        row["agent_id"]: row
        for row in Token.objects.filter(agent__in=agents)
        .values("agent_id")
        .annotate(active=Count("pk", filter=Q(revoked_at__isnull=True)), used=Max("last_used_at"))
    }
    administered = {
        ns.pk for ns in Namespace.objects.visible_to(request.user, Capability.ADMINISTER)
    }
    rows = [
        {
            "agent": agent,
            "counts": [(s, runs.get(agent.pk, {}).get(s, 0)) for s in RunStatus.values
                       if runs.get(agent.pk, {}).get(s)],
            "active_tokens": tokens.get(agent.pk, {}).get("active", 0),
            "token_last_used": tokens.get(agent.pk, {}).get("used"),
            "can_admin": agent.namespace_id in administered,
        }
        for agent in agents
    ]
    # Agents with no owner first within each namespace: they are the ones to fix.
    rows.sort(key=lambda row: (row["agent"].namespace.slug, row["agent"].owner is not None))
    return render(request, "dashboard/agents.html", {"rows": rows})
