#!/usr/bin/env python3
"""Timeline read benchmark: server time of the run list and the run page against raw SQL.

    .venv/bin/python bench/timeline.py [--runs 1000000] [--large 51200] [--repeat 30]
                                       [--database-url URL] [--reuse] [--only REGEX]
                                       [--seed-workers 2] [--no-plans] [--all-plans]

What one invocation does:

1. Database. Works in its own scratch PostgreSQL database (default
   `postgres://postgres@127.0.0.1:5432/flightdeck_bench_timeline`; the name must contain
   "bench"). Without --reuse the database is dropped and recreated, migrated and seeded. With
   --reuse it is created and migrated only if missing, and the seeding is skipped when the data
   already there was seeded with the same --runs and --large (a small table
   `bench_timeline_meta` records what was seeded, the run UUIDs and how long seeding took); if
   it was seeded with other counts it is dropped and reseeded. The database is never dropped
   at the end, so a second `--reuse` invocation only measures.
2. Seeding (timed, figures printed and in the JSON as `seed_seconds`):
   - `manage.py seed_history --runs 40`: namespaces acme and globex, their three agents, 40
     realistic runs through `ingest_batch`;
   - one running run each of 1,000, 5,000, 20,000 and --large (51,200) events
     (`history.seeding.long_history`, stored with `bulk_load`);
   - --runs runs of 5 events (`small_history`, workflow ids `batch-7-<7 digits>`, started 2 s
     apart from 30 days ago) through `bulk_load`, in --seed-workers processes: 60% to
     acme/billing-bot, 30% to globex/research-bot, 10% to initech/etl-bot, a namespace the
     viewer is NOT a member of (so scoping has something to hide);
   - agent owners (support-bot: user alice; research-bot: group research-team), a superuser
     `admin` and a user `viewer` with the viewer role in acme and globex;
   - VACUUM ANALYZE of the run and event tables.
3. Measurement, as `viewer` (scoping on): each case is a GET through `django.test.Client` (the
   real middleware stack, sessions and auth included) after `django.setup()` with DEBUG=0, a
   SECRET_KEY, ALLOWED_HOSTS=testserver,localhost, SECURE_SSL_REDIRECT=0. Each case is warmed
   up (3 requests) and its queries captured once with CaptureQueriesContext; then --repeat
   rounds go over ALL cases in turn, each running per case: the request (time.perf_counter
   from request to response, the process CPU time it used, and the time spent inside its own
   queries, added up by a `connection.execute_wrapper`); the case's main query (the
   query that fetches the rows shown: the run list's keyset page, the history page) executed
   as captured on a separate psycopg connection, rows fetched; and every captured SELECT in
   turn ("all SQL": what the database costs the view in total). Interleaving keeps the
   machine's drifting noise from landing on one case, or on one side of a ratio, only.
   Cases: the run list (first page) unfiltered and with each filter (namespace, agent,
   workflow_type, status=failed, owner, a one-hour started_after/started_before window,
   label team=batch, q substring "-0042", q prefix, the workflow_id prefix filter,
   sort=closed); the run page (`/runs/<uuid>/`) of the 1,000, 5,000, 20,000 and 51,200-event
   runs; late history pages (`history?after=50000`, full and compact, with HX-Request); a
   search in the 51,200-event history for a substring found only in its last events and for
   one found nowhere; and, for information, the detail of an early and of a late event of
   that run, the live tail and the durability panel (which the run page loads right after
   its first screen).
4. Report: a table (server p50/p95, main SQL p50/p95, their ratios, all-SQL p50, the view's
   own SQL p50 and the server time without it, the number of queries, the process CPU time,
   and which target each case misses), the EXPLAIN
   (ANALYZE, BUFFERS) of the main query and of the slowest query of each case that misses the
   p95 target (--no-plans to skip; --all-plans for the cases that miss only the ratio, whose
   SQL takes a few ms), and as the LAST line one JSON object:
   {"cases": {name: {"p50_ms", "p95_ms", "sql_p50_ms", "sql_p95_ms", "ratio_p50",
   "ratio_p95", "all_sql_p50_ms", "cpu_p50_ms", "view_sql_p50_ms", "view_sql_p95_ms",
   "non_sql_p50_ms", "non_sql_p95_ms", "queries"}}, "run_page_flatness": {"1000": p50,
   "5000": p50, "20000": p50, "51200": p50, "ratio_51200_to_1000": x}, "runs": N,
   "seed_seconds": s, "seed": {phases, rates, workers, reused}, "repeat": R, "loadavg": {...}}.
   ratio_p50 = server p50 / main SQL p50, ratio_p95 = server p95 / main SQL p95.
   view_sql_* = the time the request itself spent in its queries (sent, run, result
   received), the second baseline; non_sql_* = server time minus that, per request (Python:
   middleware, session, auth, the view, the ORM building objects, templates).

Targets: every p95 <= 150 ms and ratio_p95 <= 5; the run page flat within 20% from 1,000 to
51,200 events (ratio_51200_to_1000 <= 1.20).

Reading the figures: `cpu` is the CPU time this process spent per request (Django, templates,
the psycopg client side), `allSQL` what the database needs for all of the view's queries run
alone; server time minus both is waiting (for a CPU on a busy machine, for the network round
trips). `vSQL` is measured inside the request, so it includes round trips and waiting for the
database under load; `-SQL` (server time minus vSQL) is what the request costs outside the
database. The load average is printed before and after: above the number of CPUs, absolute
times are inflated, so compare medians of a few invocations; the ratios and the flatness are
measured in the same rounds and suffer less.

Timing: on the 2-core shared machine this was written on, seeding 1,000,000 runs took about
13 minutes (about 1,300 runs/s, 6,700 events/s with 2 workers; bulk_load is CPU-bound in
Python: model construction, parsing and hashing), 50,000 runs about 80 s; one measuring pass
of the 24 cases x 30 rounds takes about 7 minutes at 1,000,000 runs.

Start small (`--runs 50000`) to check, then `--runs 1000000 --reuse` twice: the first seeds,
the second only measures. `--only REGEX` measures only the matching cases.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import statistics
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from urllib.parse import unquote, urlencode, urlsplit, urlunsplit

import orjson
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/flightdeck_bench_timeline"
SEED = 7
SIZES = (1000, 5000, 20000)
REALISTIC_RUNS = 40
SMALL_CHUNK = 20_000  # small runs per seeding task
# (namespace, agent, share out of 10) of the small runs; initech is hidden from the viewer.
SMALL_SPLIT = (("acme", "billing-bot", 6), ("globex", "research-bot", 3), ("initech", "etl-bot", 1))
META_VERSION = 1
P95_TARGET_MS = 150.0
RATIO_TARGET = 5.0
FLATNESS_TARGET = 1.20
WARMUP = 3
FLOOR_CASE = "floor_signed_in_shell"
FLOOR_PATH = "/bench-floor/"


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def log(message: str = "") -> None:
    print(message, flush=True)


class BenchFailure(Exception):
    """The benchmark cannot produce a trustworthy figure; the message says why."""


# --- the scratch database ---------------------------------------------------------------------


class ScratchDatabase:
    def __init__(self, url: str):
        parts = urlsplit(url)
        if parts.scheme not in ("postgres", "postgresql"):
            raise BenchFailure(f"--database-url must be a postgres:// URL, not {url!r}")
        self.url = url
        self.name = unquote(parts.path.lstrip("/"))
        if "bench" not in self.name:
            raise BenchFailure(
                f"refusing to use database {self.name!r}: its name does not contain 'bench'"
            )
        self.admin_url = urlunsplit(parts._replace(path="/postgres"))

    def exists(self) -> bool:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            found = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [self.name]
            ).fetchone()
        return found is not None

    def recreate(self) -> None:
        ident = sql.Identifier(self.name)
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=True)


def set_up_django(database_url: str) -> None:
    os.environ.update(
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="dashboard.settings",
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="testserver,localhost",
        SECURE_SSL_REDIRECT="0",
        SESSION_COOKIE_SECURE="0",
        CSRF_COOKIE_SECURE="0",
        SECURE_HSTS_SECONDS="0",
        LOG_LEVEL="WARNING",
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def install_floor_page() -> None:
    """Serve FLOOR_PATH in this process only: a login-required view rendering the base
    template with nothing in it, mounted in front of the project's URLs (a throw-away URLconf
    module; nothing is added to the project)."""
    import types

    from django.conf import settings
    from django.contrib.auth.decorators import login_required
    from django.shortcuts import render
    from django.urls import include, path

    @login_required
    def floor(request):
        return render(request, "base.html")

    urls = types.ModuleType("bench_floor_urls")
    urls.urlpatterns = [path(FLOOR_PATH.strip("/") + "/", floor),
                        path("", include(settings.ROOT_URLCONF))]
    sys.modules[urls.__name__] = urls
    settings.ROOT_URLCONF = urls.__name__


def ensure_meta_table(conn: psycopg.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS bench_timeline_meta (id int PRIMARY KEY, meta jsonb NOT NULL)"
    )


def read_meta(conn: psycopg.Connection) -> dict | None:
    ensure_meta_table(conn)
    row = conn.execute("SELECT meta FROM bench_timeline_meta WHERE id = 1").fetchone()
    return row[0] if row else None


def write_meta(conn: psycopg.Connection, meta: dict) -> None:
    ensure_meta_table(conn)
    conn.execute(
        "INSERT INTO bench_timeline_meta (id, meta) VALUES (1, %s) "
        "ON CONFLICT (id) DO UPDATE SET meta = EXCLUDED.meta",
        [orjson.dumps(meta).decode()],
    )


# --- seeding ----------------------------------------------------------------------------------


def small_workflow_id(number: int) -> str:
    return f"batch-{SEED}-{number:07d}"


def _small_task(token_pks: dict[str, int], first: int, last: int, base_iso: str) -> tuple:
    """Seeding worker: small runs numbered [first, last), each to its agent's token."""
    from access.models import Token
    from history.seeding import bulk_load, small_history

    base = datetime.fromisoformat(base_iso)
    began = time.perf_counter()
    stored = 0
    slots = [agent for _, agent, share in SMALL_SPLIT for _ in range(share)]
    for agent in token_pks:
        token = Token.objects.select_related("agent").get(pk=token_pks[agent])
        rng = random.Random(SEED * 1_000_003 + first * 7 + len(agent))
        histories = (
            small_history(small_workflow_id(n), "r1", base + timedelta(seconds=n * 2), rng)
            for n in range(first, last)
            if slots[n % len(slots)] == agent
        )
        stored += bulk_load(token, histories)
    return last - first, stored, time.perf_counter() - began


def seed(runs: int, large: int, workers: int) -> dict:
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from django.db import connection, connections

    from access.models import Agent, Membership, Namespace, Token
    from history.models import Event, Run
    from history.seeding import bulk_load, long_history, start_time

    phases: dict[str, float] = {}
    began = time.perf_counter()
    call_command("seed_history", runs=REALISTIC_RUNS, seed=SEED, verbosity=0)
    initech, _ = Namespace.objects.get_or_create(slug="initech")
    etl, _ = Agent.objects.get_or_create(namespace=initech, name="etl-bot")
    if not etl.tokens.exists():
        Token.issue(agent=etl, name="seed")
    alice = User.objects.create_user("alice", password=secrets.token_urlsafe(16))
    team = Group.objects.create(name="research-team")
    Agent.objects.filter(name="support-bot").update(owner_user=alice)
    Agent.objects.filter(name="research-bot").update(owner_group=team)
    User.objects.create_superuser("admin", password=secrets.token_urlsafe(16))
    viewer = User.objects.create_user("viewer", password=secrets.token_urlsafe(16))
    for slug in ("acme", "globex"):
        Membership.objects.create(user=viewer, namespace=Namespace.objects.get(slug=slug),
                                  role="viewer")
    tokens = {
        agent.name: agent.tokens.active().first()
        for agent in Agent.objects.select_related("namespace")
    }
    phases["realistic_runs"] = time.perf_counter() - began

    step = time.perf_counter()
    rng = random.Random(SEED)
    big: dict[str, dict] = {}
    big_events = 0
    for size in (*SIZES, large):
        workflow_id = f"research-huge-{size}"
        events = long_history(workflow_id, f"run-{rng.getrandbits(48):x}", size,
                              start_time(days_ago=0.5), rng)
        big_events += bulk_load(tokens["research-bot"], iter([events]))
        run = Run.objects.get(workflow_id=workflow_id)
        big[str(size)] = {"uuid": str(run.uuid), "events": run.event_count}
    phases["large_runs"] = time.perf_counter() - step
    log(f"  realistic runs {phases['realistic_runs']:.1f}s; runs of "
        f"{', '.join(big)} events ({big_events} events) {phases['large_runs']:.1f}s")

    step = time.perf_counter()
    base = start_time(days_ago=30).replace(microsecond=0)
    token_pks = {agent: tokens[agent].pk for _, agent, _ in SMALL_SPLIT}
    tasks = [(first, min(first + SMALL_CHUNK, runs)) for first in range(0, runs, SMALL_CHUNK)]
    small_events = 0
    connections.close_all()  # the workers are forked: none may inherit this connection
    done = 0
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork")) as pool:
        futures = [pool.submit(_small_task, token_pks, a, b, base.isoformat()) for a, b in tasks]
        for future in as_completed(futures):
            count, stored, _ = future.result()
            done += count
            small_events += stored
            elapsed = time.perf_counter() - step
            log(f"  small runs {done:>9,}/{runs:,}  {done / elapsed:8,.0f} runs/s "
                f"{small_events / elapsed:9,.0f} events/s  {elapsed:7.1f}s")
    phases["small_runs"] = time.perf_counter() - step

    step = time.perf_counter()
    with connection.cursor() as cursor:
        for table in (Run._meta.db_table, Event._meta.db_table):
            cursor.execute(f"VACUUM ANALYZE {table}")
    phases["vacuum_analyze"] = time.perf_counter() - step
    total = time.perf_counter() - began
    return {
        "seed_seconds": round(total, 1),
        "phases": {k: round(v, 1) for k, v in phases.items()},
        "small_runs": runs,
        "small_events": small_events,
        "small_runs_per_s": round(runs / phases["small_runs"]) if runs else 0,
        "small_events_per_s": round(small_events / phases["small_runs"]) if runs else 0,
        "workers": workers,
        "big": big,
        "base": base.isoformat(),
        "seeded_at": datetime.now(UTC).isoformat(),
    }


# --- cases ------------------------------------------------------------------------------------


def run_list_main(query: str) -> bool:
    return 'FROM "history_run"' in query and "ORDER BY" in query and "LIMIT 51" in query


def history_main(query: str) -> bool:
    return 'FROM "history_event"' in query and "LIMIT 101" in query


def event_detail_main(query: str) -> bool:
    return 'FROM "history_event"' in query and "LIMIT 21" in query


def tail_main(query: str) -> bool:
    return 'FROM "history_event"' in query and "received_seq" in query and "LIMIT 200" in query


def durability_main(query: str) -> bool:
    """The activity events read on a cold panel; once the report is cached (every load after
    the first, until a run of the workflow id changes), the cache-key aggregate."""
    cold = 'FROM "history_event"' in query and "activity.completed" in query
    cached = 'SUM("history_run"."event_count")' in query
    return cold or cached


def session_main(query: str) -> bool:
    return 'FROM "django_session"' in query


@dataclass
class Case:
    name: str
    path: str
    main: object  # predicate over captured SQL
    htmx: bool = False
    informational: bool = False
    samples: list[float] = field(default_factory=list)
    cpu_samples: list[float] = field(default_factory=list)
    view_sql_samples: list[float] = field(default_factory=list)  # inside the request
    non_sql_samples: list[float] = field(default_factory=list)  # the request minus that
    sql_samples: list[float] = field(default_factory=list)
    all_sql_samples: list[float] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    main_query: str = ""
    per_query: list[list[float]] = field(default_factory=list)
    rows: int = 0


def build_cases(meta: dict, runs: int, large: int, big_search: str) -> list[Case]:
    base = datetime.fromisoformat(meta["base"])
    middle = base + timedelta(seconds=runs)  # small run number runs/2 starts here
    window = {
        "started_after": (middle - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "started_before": (middle + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    substring = "-0042" if runs > 43_000 else f"-{runs // 2000:04d}"
    prefix = small_workflow_id(max(runs - 1, 0))[:-3]  # the newest ~1,000 small runs

    def listing(name: str, **params) -> Case:
        return Case(f"list_{name}", "/?" + urlencode(params) if params else "/", run_list_main)

    cases = [
        listing("unfiltered"),
        listing("namespace", namespace="globex"),
        listing("agent", agent="research-bot"),
        listing("workflow_type", workflow_type="support"),
        listing("status_failed", status="failed"),
        listing("owner", owner="research-team"),
        listing("started_window", **window),
        listing("label", label="team=batch"),
        listing("q_substring", q=substring),
        listing("q_prefix", q=prefix),
        listing("workflow_id_prefix", workflow_id=prefix),
        listing("sort_closed", sort="closed"),
    ]
    for size in (*SIZES, large):
        cases.append(Case(f"run_page_{size}", f"/runs/{meta['big'][str(size)]['uuid']}/",
                          history_main))
    huge = f"/runs/{meta['big'][str(large)]['uuid']}"
    after = max(large - 1200, 0) if large < 51_200 else 50_000
    cases += [
        Case(f"history_full_after_{after}", f"{huge}/history?after={after}&view=full",
             history_main, htmx=True),
        Case(f"history_compact_after_{after}", f"{huge}/history?after={after}&view=compact",
             history_main, htmx=True),
        Case("history_search_near_end", f"{huge}/history?" + urlencode({"q": big_search}),
             history_main, htmx=True),
        Case("history_search_nothing", f"{huge}/history?q=no-such-text-anywhere",
             history_main, htmx=True),
        Case("event_detail_early", f"{huge}/events/100", event_detail_main,
             htmx=True, informational=True),
        Case("event_detail_late", f"{huge}/events/{large - 10}", event_detail_main,
             htmx=True, informational=True),
        Case("tail_late", f"{huge}/tail?seq={large - 5}", tail_main, htmx=True,
             informational=True),
        Case(f"durability_{large}", f"{huge}/durability", durability_main, htmx=True,
             informational=True),
        # The floor: a signed-in page with no data of its own (the site's shell around an
        # empty content block), i.e. what the middleware, the session and user lookups and
        # the base template cost any page. Its main query is the session lookup.
        Case(FLOOR_CASE, FLOOR_PATH, session_main, informational=True),
    ]
    return cases


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (p95 of 30 samples is the 29th smallest)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


# QuerySet.iterator() on PostgreSQL reads through a server-side cursor: its captured SQL is a
# DECLARE ... FOR SELECT; the raw side runs the SELECT and fetches every row at once.
DECLARE = re.compile(r'^\s*DECLARE\s+"[^"]+"\s+.*?\bCURSOR\s+(?:WITH(?:OUT)?\s+HOLD\s+)?FOR\s+',
                     re.IGNORECASE | re.DOTALL)


def selects(captured: list[dict]) -> list[str]:
    found = []
    for query in captured:
        text = DECLARE.sub("", query["sql"], count=1)
        head = text.lstrip().upper()
        if head.startswith(("SELECT", "WITH")):
            found.append(text)
    return found


def execute(raw: psycopg.Connection, query: str) -> tuple[float, int]:
    began = time.perf_counter()
    with raw.cursor() as cursor:
        cursor.execute(query.encode())
        rows = cursor.fetchall() if cursor.description else []
    return (time.perf_counter() - began) * 1000, len(rows)


class SqlTimer:
    """A database execute wrapper adding up the time the request spends in `execute`: the
    query sent, run, and its result received (psycopg reads a whole result in `execute`;
    turning rows into objects comes later and is not counted). Rows fetched from a
    server-side cursor (`QuerySet.iterator()`) after its DECLARE are not counted either."""

    def __init__(self):
        self.ms = 0.0

    def __call__(self, execute, sql, params, many, context):
        began = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.ms += (time.perf_counter() - began) * 1000


def request(case: Case, client) -> float:
    """One GET of the case through the test client: milliseconds from request to response;
    records the process CPU time it used and the time its own queries took."""
    from django.db import connection

    headers = {"HX-Request": "true"} if case.htmx else {}
    timer = SqlTimer()
    cpu = time.process_time()
    began = time.perf_counter()
    with connection.execute_wrapper(timer):
        response = client.get(case.path, headers=headers)
    elapsed = (time.perf_counter() - began) * 1000
    case.cpu_samples.append((time.process_time() - cpu) * 1000)
    case.view_sql_samples.append(timer.ms)
    case.non_sql_samples.append(elapsed - timer.ms)
    if response.status_code not in (200, 204, 286):
        raise BenchFailure(f"{case.name}: GET {case.path} answered {response.status_code}")
    return elapsed


def prepare(case: Case, client, raw: psycopg.Connection) -> None:
    """Warm the case up, capture its queries once and pick its main query."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(WARMUP):
        request(case, client)
    with CaptureQueriesContext(connection) as captured:
        request(case, client)
    case.queries = selects(captured.captured_queries)
    mains = [q for q in case.queries if case.main(q)]
    if not mains:
        listing = "\n".join(q[:200] for q in case.queries)
        raise BenchFailure(f"{case.name}: main query not found among:\n{listing}")
    case.main_query = mains[0]
    for _ in range(WARMUP):
        execute(raw, case.main_query)
    case.cpu_samples.clear()
    case.view_sql_samples.clear()
    case.non_sql_samples.clear()
    case.per_query = [[] for _ in case.queries]


def sample(case: Case, client, raw: psycopg.Connection) -> None:
    """One round of the case: the request, its main query alone, then every captured query."""
    case.samples.append(request(case, client))
    elapsed, case.rows = execute(raw, case.main_query)
    case.sql_samples.append(elapsed)
    total = 0.0
    for index, query in enumerate(case.queries):
        elapsed, _ = execute(raw, query)
        case.per_query[index].append(elapsed)
        total += elapsed
    case.all_sql_samples.append(total)


def summarise(case: Case) -> dict:
    p50, p95 = statistics.median(case.samples), percentile(case.samples, 95)
    s50, s95 = statistics.median(case.sql_samples), percentile(case.sql_samples, 95)
    return {
        "p50_ms": round(p50, 2),
        "p95_ms": round(p95, 2),
        "sql_p50_ms": round(s50, 3),
        "sql_p95_ms": round(s95, 3),
        "ratio_p50": round(p50 / s50, 1) if s50 else None,
        "ratio_p95": round(p95 / s95, 1) if s95 else None,
        "all_sql_p50_ms": round(statistics.median(case.all_sql_samples), 2),
        "ratio_all_sql_p50": round(p50 / statistics.median(case.all_sql_samples), 1),
        "cpu_p50_ms": round(statistics.median(case.cpu_samples), 2),
        "view_sql_p50_ms": round(statistics.median(case.view_sql_samples), 2),
        "view_sql_p95_ms": round(percentile(case.view_sql_samples, 95), 2),
        "non_sql_p50_ms": round(statistics.median(case.non_sql_samples), 2),
        "non_sql_p95_ms": round(percentile(case.non_sql_samples, 95), 2),
        "queries": len(case.queries),
    }


def misses(summary: dict) -> list[str]:
    found = []
    if summary["p95_ms"] > P95_TARGET_MS:
        found.append(f"p95>{P95_TARGET_MS:.0f}ms")
    if summary["ratio_p95"] is not None and summary["ratio_p95"] > RATIO_TARGET:
        found.append(f"p95>{RATIO_TARGET:.0f}x SQL")
    return found


def explain(raw: psycopg.Connection, query: str) -> str:
    with raw.cursor() as cursor:
        cursor.execute(b"EXPLAIN (ANALYZE, BUFFERS) " + query.encode())
        return "\n".join(row[0] for row in cursor.fetchall())


def find_search_term(large_uuid: str) -> str:
    """A substring of the big run's history found only in its last few events: the step
    number its closing markers carry (see history.seeding.long_history)."""
    from history.models import Event

    last = Event.objects.filter(run__uuid=large_uuid).order_by("-event_id").first()
    step = orjson.loads(last.attributes)["step"]
    return f'"step":{step}'


# --- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000, help="runs of 5 events")
    parser.add_argument("--large", type=int, default=51_200, help="events of the big run")
    parser.add_argument("--repeat", type=int, default=30, help="samples per case")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--reuse", action="store_true",
                        help="keep the database and its data if seeded with the same counts")
    parser.add_argument("--seed-workers", type=int, default=2,
                        help="processes loading the small runs (default 2)")
    parser.add_argument("--only", default="", metavar="REGEX", help="measure matching cases")
    parser.add_argument("--no-plans", action="store_true",
                        help="do not print EXPLAIN ANALYZE of the cases that miss")
    parser.add_argument("--all-plans", action="store_true",
                        help="EXPLAIN ANALYZE also the cases that miss only the ratio target")
    args = parser.parse_args(argv)
    if args.runs < 1000 or args.large <= max(SIZES) or args.repeat < 1:
        parser.error("--runs must be >= 1000, --large > 20000, --repeat >= 1")
    if args.seed_workers < 1:
        parser.error("--seed-workers must be 1 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    db = ScratchDatabase(args.database_url)
    config = {"version": META_VERSION, "runs": args.runs, "large": args.large,
              "sizes": list(SIZES), "realistic": REALISTIC_RUNS}
    meta = None
    if args.reuse and db.exists():
        with db.connect() as conn:
            meta = read_meta(conn)
        if meta is not None and meta.get("config") != config:
            log(f"database {db.name} was seeded with {meta.get('config')}; reseeding")
            meta = None
            db.recreate()
        elif meta is None:
            db.recreate()
    else:
        db.recreate()
    set_up_django(args.database_url)
    install_floor_page()
    from django.core.management import call_command

    began = time.perf_counter()
    call_command("migrate", verbosity=0)
    migrate_seconds = time.perf_counter() - began
    if meta is None:
        log(f"seeding {db.name}: {args.runs:,} runs of 5 events, runs of "
            f"{', '.join(str(s) for s in (*SIZES, args.large))} events, "
            f"{REALISTIC_RUNS} realistic runs ({args.seed_workers} workers)")
        info = seed(args.runs, args.large, args.seed_workers)
        meta = {"config": config, **info, "migrate_seconds": round(migrate_seconds, 1)}
        with db.connect() as conn:
            write_meta(conn, meta)
        reused = False
    else:
        reused = True
        log(f"reusing {db.name}: seeded {meta['seeded_at']} in {meta['seed_seconds']}s")
    log(f"seed: {meta['seed_seconds']}s in all {meta['phases']}; small runs "
        f"{meta['small_runs_per_s']:,} runs/s, {meta['small_events_per_s']:,} events/s "
        f"({meta['workers']} workers)")

    from django.contrib.auth.models import User
    from django.test import Client

    from history.models import Event, Run

    big_search = find_search_term(meta["big"][str(args.large)]["uuid"])
    cases = build_cases(meta, args.runs, args.large, big_search)
    if args.only:
        cases = [c for c in cases if re.search(args.only, c.name)]
    client = Client()
    client.force_login(User.objects.get(username="viewer"))
    log(f"{Run.objects.count():,} runs, {Event.objects.count():,} events; measuring "
        f"{len(cases)} cases x {args.repeat} as viewer")
    load_before = loadavg()
    log(f"load average before: {load_before} on {os.cpu_count()} CPUs")
    summaries: dict[str, dict] = {}
    with psycopg.connect(args.database_url, autocommit=True) as raw:
        raw.execute("SET TIME ZONE 'UTC'")
        for case in cases:
            prepare(case, client, raw)
        # Rounds over all cases, so that the machine's noise, which drifts over minutes, falls
        # on every case alike (this matters most for the run page's flatness).
        began = time.perf_counter()
        for number in range(1, args.repeat + 1):
            for case in cases:
                sample(case, client, raw)
            if number in (1, 5) or number % 10 == 0:
                log(f"  round {number}/{args.repeat} ({time.perf_counter() - began:.0f}s)")
        for case in cases:
            summaries[case.name] = summarise(case)
            s = summaries[case.name]
            log(f"  {case.name:<28} p50 {s['p50_ms']:7.1f}  p95 {s['p95_ms']:7.1f}  "
                f"sql p50 {s['sql_p50_ms']:7.2f}  all sql {s['all_sql_p50_ms']:7.1f}  "
                f"view sql {s['view_sql_p50_ms']:6.1f}  cpu {s['cpu_p50_ms']:6.1f}  "
                f"({case.rows} rows, {s['queries']} queries)")
        if not args.no_plans:
            print_plans(cases, summaries, raw, args.all_plans)
    print_table(cases, summaries)
    load_after = loadavg()
    log(f"load average after: {load_after} on {os.cpu_count()} CPUs"
        + (" -- the machine was busy: compare medians of several invocations"
           if load_after and load_after[0] > (os.cpu_count() or 1) else ""))
    flatness = {str(size): summaries[f"run_page_{size}"]["p50_ms"]
                for size in (*SIZES, args.large) if f"run_page_{size}" in summaries}
    if "1000" in flatness and str(args.large) in flatness:
        flatness[f"ratio_{args.large}_to_1000"] = round(
            flatness[str(args.large)] / flatness["1000"], 2)
        ratio = flatness[f"ratio_{args.large}_to_1000"]
        verdict = "flat" if ratio <= FLATNESS_TARGET else "NOT flat"
        log(f"run page p50 by history length: {flatness} -> {verdict} "
            f"(target <= {FLATNESS_TARGET:.2f})")
    floor = floor_summary(summaries)
    if floor:
        log(f"floor (a signed-in page with no data): p50 {floor['p50_ms']} ms, p95 "
            f"{floor['p95_ms']} ms; cases whose 5x-SQL budget (p95) is below the floor's p95: "
            f"{', '.join(floor['budget_below_floor']) or 'none'}")
    result = {
        "cases": summaries,
        "floor": floor,
        "run_page_flatness": flatness,
        "runs": args.runs,
        "seed_seconds": meta["seed_seconds"],
        "seed": {k: meta[k] for k in ("phases", "small_runs_per_s", "small_events_per_s",
                                       "workers", "seeded_at")} | {"reused": reused},
        "repeat": args.repeat,
        "loadavg": {"before": load_before, "after": load_after},
    }
    print(json.dumps(result), flush=True)
    return 0


def floor_summary(summaries: dict) -> dict:
    """The floor case's times, and the measured cases whose ratio target (5x their main query's
    p95) is below what the floor itself takes at p95: no page can meet those here."""
    floor = summaries.get(FLOOR_CASE)
    if floor is None:
        return {}
    below = [name for name, s in summaries.items()
             if name != FLOOR_CASE and s["sql_p95_ms"] * RATIO_TARGET < floor["p95_ms"]]
    return {"p50_ms": floor["p50_ms"], "p95_ms": floor["p95_ms"],
            "cpu_p50_ms": floor["cpu_p50_ms"], "queries": floor["queries"],
            "budget_below_floor": below}


def print_plans(cases: list[Case], summaries: dict, raw: psycopg.Connection,
                everything: bool) -> None:
    """Why each case misses: for a p95 miss the EXPLAIN (ANALYZE, BUFFERS) of its main query
    and of its slowest query; for a miss of the ratio alone (fast SQL), one line splitting the
    time between SQL and this process's CPU, unless `everything` asks for the plans too."""
    for case in cases:
        s = summaries[case.name]
        found = misses(s)
        if not found:
            continue
        log(f"\n=== {case.name} misses {', '.join(found)}: {case.path}")
        medians = [statistics.median(times) for times in case.per_query]
        other_sql = s["all_sql_p50_ms"] - s["sql_p50_ms"]
        log(f"    p50 {s['p50_ms']} ms: main query {s['sql_p50_ms']} ms, the {s['queries'] - 1} "
            f"other queries {other_sql:.1f} ms, CPU in Django and psycopg {s['cpu_p50_ms']} ms, "
            "the rest waiting (for a CPU, round trips); inside the request its queries took "
            f"{s['view_sql_p50_ms']} ms and everything else {s['non_sql_p50_ms']} ms")
        if s["p95_ms"] <= P95_TARGET_MS and other_sql < s["cpu_p50_ms"] and not everything:
            log("    the SQL is fast: the overhead is Python (--all-plans for the plans)")
            continue
        log("--- main query:\n" + case.main_query)
        log(explain(raw, case.main_query))
        slowest = max(range(len(medians)), key=medians.__getitem__)
        if case.queries[slowest] != case.main_query and medians[slowest] > 5:
            log(f"--- slowest query ({medians[slowest]:.1f} ms):\n" + case.queries[slowest])
            log(explain(raw, case.queries[slowest]))
        others = sorted(((m, q) for m, q in zip(medians, case.queries, strict=True)),
                        reverse=True)[:5]
        log("--- captured queries by median time: " + "; ".join(
            f"{m:.2f}ms {q[:70]!r}" for m, q in others))
        shapes = [re.sub(r"\d+", "N", q) for q in case.queries]
        for shape, count in Counter(shapes).most_common(3):
            if count >= 10:
                spent = sum(m for m, other in zip(medians, shapes, strict=True) if other == shape)
                log(f"--- N+1: {count} queries of one shape, {spent:.1f} ms in all: "
                    f"{shape[:240]}")


def print_table(cases: list[Case], summaries: dict) -> None:
    header = (f"{'case':<28} {'p50':>7} {'p95':>7} {'sql p50':>8} {'sql p95':>8} "
              f"{'x p50':>6} {'x p95':>6} {'allSQL':>7} {'vSQL':>6} {'-SQL':>6} {'cpu':>6} "
              f"{'q':>3}  misses")
    log("\n" + header)
    log("-" * len(header))
    for case in cases:
        s = summaries[case.name]
        found = misses(s)
        note = ", ".join(found) or "ok"
        if case.informational:
            note += " (info)"
        log(f"{case.name:<28} {s['p50_ms']:7.1f} {s['p95_ms']:7.1f} {s['sql_p50_ms']:8.2f} "
            f"{s['sql_p95_ms']:8.2f} {s['ratio_p50'] or 0:6.1f} {s['ratio_p95'] or 0:6.1f} "
            f"{s['all_sql_p50_ms']:7.1f} {s['view_sql_p50_ms']:6.1f} {s['non_sql_p50_ms']:6.1f} "
            f"{s['cpu_p50_ms']:6.1f} {s['queries']:>3}  {note}")
    log("ms; sql = the main query alone on a psycopg connection; x = server / sql; allSQL = "
        "every captured SELECT run alone (p50 of the sums); vSQL = time in the view's own "
        "queries during the request, p50; -SQL = server time minus that, per request, p50; "
        "cpu = this process's CPU time per request (Django + psycopg client side), p50; "
        "q = SELECTs per request")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchFailure as exc:
        print(f"bench/timeline.py: {exc}", file=sys.stderr)
        sys.exit(1)
