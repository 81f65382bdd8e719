"""Pages of the history app: the run list, a run's history region, event detail, the live
tail and the durability panel. The run page itself is composed in `dashboard`, from the
context builders here (`history_region`, `run_header`) and the interventions app's parts."""

from __future__ import annotations

from urllib.parse import urlencode

import orjson
from django.contrib.auth.decorators import login_required
from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import push_url

from access.models import Agent, Namespace
from history.access import get_run_for, may_see_raw
from history.durability import cached_analysis
from history.models import Event, Run, SavedView
from history.payloads import decoded_payloads
from history.run_filters import FilterError, RunFilter
from history.timeline import compact_rows, waterfall
from history.verification import verify_run
from history.vocabulary import CLOSED_STATUSES, CORE_EVENT_TYPES, RunStatus

PLAIN = "text/plain; charset=utf-8"  # error text that may echo input is never HTML
PAGE_SIZE = 50
HISTORY_PAGE = 100
COUNT_CAP = 10_000
VIEWS = ("compact", "full", "json")
# How far past a page the compact view looks for the outcome of an activity that starts on
# it: far enough for any real activity, bounded so a page never scans a whole history.
OUTCOME_WINDOW = 2000
ANY_UUID = "00000000-0000-0000-0000-000000000000"
# Stands for the status in the compiled count query: no run has it, and no filter value can
# hold it (RunFilter refuses NUL), so it is found among the parameters only where it was put.
STATUS_SLOT = "\x00status"
# What a row of the run list shows (the template), pages by (RunFilter.page) and decides
# live refresh on: a page of runs reads and builds only these.
LIST_FIELDS = (
    "uuid", "namespace__slug", "agent__name", "workflow_id", "run_id", "workflow_type",
    "status", "started_at", "closed_at", "event_count", "contiguous_through", "last_event_id",
)


# --- run list ------------------------------------------------------------------------------


def status_counts(runs) -> tuple[list[tuple[str, int]], bool]:
    """Runs per status, each exact up to COUNT_CAP and capped past it (flagged so), in one
    query: a UNION ALL of one bounded count per status, each able to use a status index."""
    # Compiled once, for a status no run has, then bound once per status (compiling the
    # queryset eight times cost more than running the query).
    # Selecting the status (not the key) lets PostgreSQL count from the status indexes alone.
    bounded = runs.filter(status=STATUS_SLOT).order_by().values("status")[: COUNT_CAP + 1]
    try:
        sql, template = bounded.query.sql_with_params()
    except EmptyResultSet:  # a filter that can match nothing (an unknown name)
        return [(s, 0) for s in RunStatus.values], False
    slot = template.index(STATUS_SLOT)
    parts, params = [], []
    for number, status in enumerate(RunStatus.values):
        parts.append(f"SELECT {number}, COUNT(*) FROM ({sql}) AS bounded_{number}")  # noqa: S608
        params.extend((*template[:slot], status, *template[slot + 1 :]))
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(parts), params)
        found = dict(cursor.fetchall())
    counts = [(status, found.get(n, 0)) for n, status in enumerate(RunStatus.values)]
    return counts, any(count > COUNT_CAP for _, count in counts)


def link_runs(runs: list[Run]) -> None:
    """Set `run.url`, the run page's address, on each run: reversed once for the page, not
    once per row (a reverse costs more than the rest of a row's rendering)."""
    address = reverse("run", args=[ANY_UUID])
    for run in runs:
        run.url = address.replace(ANY_UUID, str(run.uuid))


@login_required
@require_GET
def run_list(request: HttpRequest) -> HttpResponse:
    namespaces = list(Namespace.objects.visible_to(request.user))
    visible = Run.objects.visible_to(request.user, namespaces=namespaces)
    try:
        filters = RunFilter.from_query(request.GET)
        base = filters.apply(visible, include_status=False)
        runs = base.filter(status__in=filters.statuses) if filters.statuses else base
        page, next_cursor = filters.page(
            runs.select_related("namespace", "agent").only(*LIST_FIELDS),
            request.GET.get("cursor", ""),
            PAGE_SIZE,
        )
        errors = {}
    except FilterError as exc:
        filters, base, page, next_cursor, errors = RunFilter(), visible.none(), [], None, exc.errors
    counts, capped = status_counts(base) if not errors else ([], False)
    query = request.GET.copy()
    query.pop("cursor", None)
    count_query = query.copy()  # a count's link replaces the status filter, never adds to it
    count_query.pop("status", None)
    next_query = None
    if next_cursor:
        next_query = query.copy()
        next_query["cursor"] = next_cursor
    link_runs(page)
    context = {
        "filters": filters,
        "errors": errors,
        "runs": page,
        "counts": counts,
        "counts_capped": capped,
        "count_cap": COUNT_CAP,
        "next_url": f"?{next_query.urlencode()}" if next_query else None,
        "query": query.urlencode(),
        "count_query": count_query.urlencode(),
        "has_open": any(run.status not in CLOSED_STATUSES for run in page),
        "is_first_page": not request.GET.get("cursor"),
    }
    status = 400 if errors else 200
    if request.htmx and request.htmx.target in ("run-list", "run-rows"):
        # The live refresh and the filters ask for the list alone: no sidebar to fill.
        return render(request, "history/run_list.html#list", context, status=status)
    context.update(
        statuses=RunStatus.values,
        namespaces=namespaces,
        agents=Agent.objects.filter(namespace__in=namespaces).select_related("namespace"),
        saved_views=SavedView.objects.filter(owner=request.user),
    )
    return render(request, "history/run_list.html", context, status=status)


@login_required
@require_POST
def save_view(request: HttpRequest) -> HttpResponse:
    name = request.POST.get("name", "").replace("\x00", "").strip()[:100]
    query = request.POST.get("query", "")[:2000]
    if not name:
        return HttpResponseBadRequest("name: give the view a name", content_type=PLAIN)
    try:
        RunFilter.from_query(QueryDict(query))
    except FilterError as exc:
        return HttpResponseBadRequest(f"query: {exc}", content_type=PLAIN)
    SavedView.objects.update_or_create(owner=request.user, name=name, defaults={"query": query})
    return redirect(f"/?{query}" if query else "/")


@login_required
@require_POST
def delete_view(request: HttpRequest, view_uuid) -> HttpResponse:
    get_object_or_404(SavedView, uuid=view_uuid, owner=request.user).delete()
    return redirect("home")


@login_required
@require_GET
def open_view(request: HttpRequest, view_uuid) -> HttpResponse:
    """A saved view's shareable URL: anyone signed in may open it; it holds only filters."""
    view = get_object_or_404(SavedView, uuid=view_uuid)
    return redirect(f"/?{view.query}" if view.query else "/")


# --- a run's history -------------------------------------------------------------------------


def run_urls(run: Run) -> dict:
    """URLs every row of a run's history links to, reversed once per page instead of once per
    row (reversing is a measurable part of rendering a page of a hundred events)."""
    return {
        "run_url": reverse("run", args=[run.uuid]),
        "history_url": reverse("run-history", args=[run.uuid]),
        "event_url": reverse("event-detail", args=[run.uuid, 1])[:-1],  # + event id
    }


def history_region(request: HttpRequest, run: Run) -> dict:
    """Context for the history region of the run page: one page of events in the chosen view,
    filtered and searched, starting after `after` or at the event `event`."""
    params = request.GET
    view = params.get("view", "compact")
    if view not in VIEWS:
        view = "compact"
    allowed_raw = may_see_raw(request.user, run)
    raw = params.get("raw") == "1" and allowed_raw
    events = run.events.all()
    # U+0000 can match nothing stored (ingest refuses it) and PostgreSQL refuses it as a
    # parameter, so it is dropped from the text filters.
    category = params.get("category", "").replace("\x00", "")
    if category:
        events = events.filter(type__startswith=f"{category}.")
    event_type = params.get("type", "").replace("\x00", "")
    if event_type:
        events = events.filter(type=event_type)
    search = params.get("q", "").replace("\x00", "").strip()[:200]
    if search:
        # Searching the masked form: a secret's value can never be found by guessing it.
        events = events.filter(
            Q(masked_attributes__icontains=search)
            | Q(masked_attributes__isnull=True, attributes__icontains=search)
            | Q(type__icontains=search)
            | Q(identity__icontains=search)
        )
    after = _positive_int(params.get("after"), 0)
    focus = _positive_int(params.get("event"), 0)
    if focus:
        after = max(focus - 1, 0)
    page = list(events.filter(event_id__gt=after).order_by("event_id")[: HISTORY_PAGE + 1])
    more = len(page) > HISTORY_PAGE
    page = page[:HISTORY_PAGE]
    rows = []
    if view == "compact":
        starts = [e.event_id for e in page if e.type == "activity.scheduled"]
        extra = []
        if starts and not (category or event_type or search):
            last = page[-1].event_id
            extra = list(
                run.events.filter(
                    event_id__gt=last,
                    event_id__lte=last + OUTCOME_WINDOW,
                    refs__scheduled__in=starts,
                ).order_by("event_id")
            )
        rows = compact_rows(page, raw=raw, extra_members=extra)
    json_text = ""
    if view == "json":
        json_text = orjson.dumps(
            [_event_json(event, raw=raw) for event in page], option=orjson.OPT_INDENT_2
        ).decode()
    keep = {k: v for k, v in params.items() if k in ("view", "category", "type", "q", "raw")}
    filters_only = {k: v for k, v in keep.items() if k != "view"}
    view_tabs = [
        ((name, urlencode({**filters_only, "view": name})), title)
        for name, title in (("compact", "Compact"), ("full", "Full"), ("json", "JSON"))
    ]
    next_url = None
    if more:
        next_url = "?" + urlencode({**keep, "after": page[-1].event_id})
    return {
        **run_urls(run),
        "run": run,
        "view": view,
        "raw": raw,
        "may_see_raw": allowed_raw,
        "events": page,
        "rows": rows,
        "json_text": json_text,
        "category": category,
        "event_type": event_type,
        "search": search,
        "focus": focus,
        "after": after,
        "next_url": next_url,
        "categories": list(CORE_EVENT_TYPES),
        "view_tabs": view_tabs,
        "is_first_page": after == 0,
    }


def _event_json(event: Event, *, raw: bool) -> dict:
    return {
        "event_id": event.event_id,
        "type": event.type,
        "time": event.time_text,
        "identity": event.identity or None,
        "refs": event.refs,
        "attributes": event.attributes_for(raw=raw),
        "secret_findings": event.secret_findings,
    }


def _positive_int(value, default: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return number if number >= 0 else default


def run_header(run: Run) -> dict:
    now = timezone.now()
    end = run.closed_at or now
    first = run.first_missing_range()
    return {
        "run": run,
        "duration_seconds": max((end - run.started_at).total_seconds(), 0),
        "first_missing": first,
        # Missing events beyond the first range (the durability panel lists every range).
        "more_missing": run.last_event_id - run.event_count - (first[1] - first[0] + 1)
        if first else 0,
    }


def run_waterfall(run: Run, history: dict, marks=()) -> dict:
    """The waterfall over the groups of the history page shown (compact rows)."""
    rows = history["rows"]
    if history["view"] != "compact":
        rows = compact_rows(history["events"], raw=history["raw"])
    return {"waterfall": waterfall(rows, now=timezone.now(), marks=list(marks)), "run": run}


@login_required
@require_GET
def run_history(request: HttpRequest, run_uuid) -> HttpResponse:
    """The history region alone (for htmx paging, filters and search) or, without htmx, the
    full run page at that position."""
    run = get_run_for(request.user, run_uuid)
    if not request.htmx:
        return redirect(f"/runs/{run.uuid}/?{request.GET.urlencode()}")
    context = history_region(request, run)
    paging = bool(request.GET.get("after")) and not request.GET.get("event")
    if paging and context["view"] != "json":
        # Rows appended below the current ones ("Load more"): the address stays as it is.
        return render(request, "history/run_parts.html#history-page", context)
    response = render(request, "history/run_parts.html#history", context)
    # The whole region was replaced (new view, filter, search or page): keep it in the address
    # so that reload, back and a shared link show the same thing.
    return push_url(response, f"/runs/{run.uuid}/?{request.GET.urlencode()}")


@login_required
@require_GET
def event_detail(request: HttpRequest, run_uuid, event_id: int) -> HttpResponse:
    run = get_run_for(request.user, run_uuid)
    event = get_object_or_404(run.events, event_id=event_id)
    allowed_raw = may_see_raw(request.user, run)
    raw = request.GET.get("raw") == "1" and allowed_raw
    attributes = event.attributes_for(raw=raw)
    related = sorted(
        (name, ref) for name, ref in (event.refs or {}).items() if isinstance(ref, int)
    )
    referring = [
        (other.type, other.event_id)
        for other in run.events.filter(
            event_id__gt=event.event_id, event_id__lte=event.event_id + OUTCOME_WINDOW
        ).only("run_id", "event_id", "type", "refs").order_by("event_id")
        if event.event_id in (other.refs or {}).values()
    ][:50]
    context = {
        "run": run,
        "event": event,
        "raw": raw,
        "may_see_raw": allowed_raw,
        "pretty": orjson.dumps(attributes, option=orjson.OPT_INDENT_2).decode(),
        "decoded": [
            (path, orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())
            for path, value in decoded_payloads(attributes)
        ],
        "related": related,
        "referring": referring,
        "in_panel": bool(request.htmx),  # in the run page's side panel, links load there too
    }
    if request.htmx:
        return render(request, "history/event_detail.html#detail", context)
    return render(request, "history/event_detail.html", context)


@login_required
@require_GET
def tail(request: HttpRequest, run_uuid) -> HttpResponse:
    """Events received after the cursor `seq`, in arrival order, for a live run. 204 when
    nothing is new; 286 (htmx: stop polling) once the run has closed."""
    run = get_run_for(request.user, run_uuid)
    seq = _positive_int(request.GET.get("seq"), 0)
    fresh = list(run.events.received_after(seq)[:200])
    # Stop polling only once the run has closed, nothing is missing (a late event could still
    # fill a gap) and this answer holds the last events.
    closed = run.status in CLOSED_STATUSES and not run.has_gaps and len(fresh) < 200
    if not fresh:
        return HttpResponse(status=286 if closed else 204)
    context = {
        **run_urls(run),
        "run": run,
        "events": fresh,
        "seq": fresh[-1].received_seq,
        "contiguous_through": run.contiguous_through,
        "header": run_header(run),
        "raw": False,
        "closed": closed,
    }
    return render(
        request, "history/run_parts.html#tail-rows", context, status=286 if closed else 200
    )


@login_required
@require_GET
def durability(request: HttpRequest, run_uuid) -> HttpResponse:
    run = get_run_for(request.user, run_uuid)
    context = {"run": run, "report": cached_analysis(run)}
    if request.htmx:
        return render(request, "history/run_parts.html#durability", context)
    return render(request, "history/durability.html", context)


@login_required
@require_GET
def verify(request: HttpRequest, run_uuid) -> HttpResponse:
    """Re-check the run's hash chain now (what `manage.py verify_history` does for one run)."""
    run = get_run_for(request.user, run_uuid)
    problems = verify_run(run)
    context = {"run": run, "problems": [str(problem) for problem in problems[:50]],
               "more": max(len(problems) - 50, 0)}
    if request.htmx:
        return render(request, "history/run_parts.html#verification", context)
    return render(request, "history/verification.html", context)
