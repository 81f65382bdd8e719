#!/usr/bin/env python3
"""Governance benchmark: what governance costs ingest, how a workflow id's durability check
scales with its runs, the governance page at scale, and retention deleting a long run.

    .venv/bin/python bench/governance.py [--runs 20000] [--findings-per-run 10]
                                         [--ingest-runs 30] [--batch 200] [--siblings 100]
                                         [--large 51200] [--repeat 20] [--database-url URL]

It works in its own scratch PostgreSQL database (default
`postgres://postgres@127.0.0.1:5432/flightdeck_bench_governance`; the name must contain
"bench"), dropped and recreated at the start and left at the end for inspection.

1. Ingest overhead. --ingest-runs runs of 400 SDK-shaped events each go through
   `history.ingest.ingest_batch` in batches of --batch events, alternately with governance's
   receiver connected and disconnected (eight interleaved passes, fresh runs each time), for
   misbehaving streams (tool calls outside the allow-list, privileged calls without approval,
   an API key every tenth run: findings in every batch) and clean ones (allowed tools only).
   Figures: events/s on and off, `ingest_ratio` = on / off, for each.
2. Durability across a workflow id. One workflow id with --siblings runs of ~40 activity
   events (every fifth run fails and the next starts over). `check_workflow` (all runs at
   once) against calling `history.durability.analyse` on each run (what the run page's panel
   does, which reads the workflow id's events once per run). `check_speedup` = panel total /
   check.
3. The page at scale. --runs small runs (bulk_load) and --runs x --findings-per-run findings
   spread over 30 days, one workflow check per run; VACUUM ANALYZE. The governance page as a
   viewer through django.test.Client (real middleware, sessions, auth), --repeat times after 3
   warm-ups: p50/p95 server time, against its main query (the findings page) run alone on the
   same connection: `page_ratio_p50`. Also the number of queries.
4. Retention of a long run: a closed run of --large events is deleted by `apply_retention`;
   seconds, and the audit chain verified afterwards.

The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/flightdeck_bench_governance"
OPENAI_KEY = "sk-proj-" + "Q7vX2mK9pL4wR8tZ3nB6cF1hJ5sD0gYa"


def log(message: str = "") -> None:
    print(message, file=sys.stderr, flush=True)


def recreate(url: str) -> None:
    parts = urlsplit(url)
    name = unquote(parts.path.lstrip("/"))
    if "bench" not in name:
        sys.exit(f"refusing to use database {name!r}: its name does not contain 'bench'")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        ident = sql.Identifier(name)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))


def set_up_django(url: str) -> None:
    os.environ.update(
        DATABASE_URL=url, DJANGO_SETTINGS_MODULE="dashboard.settings", DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50), ALLOWED_HOSTS="testserver,localhost",
        SECURE_SSL_REDIRECT="0", SESSION_COOKIE_SECURE="0", CSRF_COOKIE_SECURE="0",
        SECURE_HSTS_SECONDS="0", LOG_LEVEL="WARNING",
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


# --- histories --------------------------------------------------------------------------------


def sdk_run(workflow_id: str, run_id: str, n: int, length: int = 100,
            *, fail: bool = False, keys: str = "", clean: bool = False) -> list[dict]:
    """~`length` events as the SDK emits them: tool calls (one in four outside the allow-list,
    one in four privileged without an approval), LLM calls, an outcome. Activity keys are
    prefixed with `keys` (default: the run id, so that runs do not share units of work)."""
    from tests.governance.streams import Stream

    stream = Stream(workflow_id, run_id).start()
    step = 0
    prefix = keys or run_id
    tools = ["search_kb", "get_customer"] if clean else [
        "search_kb", "get_customer", "shell_exec", "issue_refund"]
    while len(stream.events) < length - 5:
        tool = tools[step % len(tools)]
        arguments = {"step": step}
        if n % 10 == 0 and step == 1 and not clean:
            arguments["api_key"] = OPENAI_KEY
        stream.call(tool, arguments, key=f"{prefix}:{tool}:{step}")
        if step % 3 == 0:
            stream.call("plan", {"step": step}, kind="llm", key=f"{prefix}:plan:{step}")
        step += 1
    stream.finish("workflow.failed" if fail else "workflow.completed")
    return stream.events


def set_up_namespace():
    from django.contrib.auth import get_user_model

    from access.models import Agent, Membership, Namespace, Token
    from interventions.models import ApprovalPolicy

    acme = Namespace.objects.create(slug="acme")
    owner = get_user_model().objects.create_user("alice")
    viewer = get_user_model().objects.create_user("viewer")
    Membership.objects.create(user=viewer, namespace=acme, role="viewer")
    agent = Agent.objects.create(namespace=acme, name="support-bot", owner_user=owner,
                                 allowed_tools=["search_kb", "get_customer", "issue_refund"])
    ApprovalPolicy.objects.create(agent=agent, tool="issue_refund")
    token, _ = Token.issue(agent=agent)
    return acme, agent, token, viewer


# --- 1. ingest overhead -------------------------------------------------------------------------


def ingest_overhead(token, runs: int, batch_size: int) -> dict:
    """Events/s through ingest_batch with governance's receiver on and off, for misbehaving
    streams (findings in every batch) and for clean ones (tool calls, nothing to find)."""
    from governance import detection
    from history.ingest import ingest_batch
    from history.signals import batch_stored

    def one_pass(tag: str, governed: bool, clean: bool) -> float:
        if governed:
            batch_stored.connect(detection.on_batch_stored, dispatch_uid="governance.detection")
        else:
            batch_stored.disconnect(dispatch_uid="governance.detection")
        histories = [sdk_run(f"ingest-{tag}-{n}", "r", n, length=400, clean=clean)
                     for n in range(runs)]
        batches = [history[i:i + batch_size] for history in histories
                   for i in range(0, len(history), batch_size)]
        started = time.perf_counter()
        for batch in batches:
            ingest_batch(token, batch, max_attributes_bytes=256 * 1024)
        return sum(len(b) for b in batches) / (time.perf_counter() - started)

    figures = {}
    for clean in (False, True):
        rates = {True: [], False: []}
        for round_ in range(4):  # interleaved, the order alternating, against drifting load
            for governed in (False, True) if round_ % 2 == 0 else (True, False):
                rates[governed].append(one_pass(f"{clean}-{round_}-{governed}", governed, clean))
        on, off = statistics.median(rates[True]), statistics.median(rates[False])
        kind = "clean" if clean else "misbehaving"
        log(f"  ingest, {kind} streams: {on:,.0f} events/s with governance, {off:,.0f} without")
        figures[kind] = {"events_per_s_on": round(on), "events_per_s_off": round(off),
                         "ingest_ratio": round(on / off, 3)}
    batch_stored.connect(detection.on_batch_stored, dispatch_uid="governance.detection")
    return figures


# --- 2. durability across a workflow id -----------------------------------------------------------


def durability_scaling(token, siblings: int) -> dict:
    from governance import durability_checks
    from governance.models import WorkflowCheck
    from history import durability
    from history.ingest import ingest_batch
    from history.models import Run

    for n in range(siblings):
        # Every fifth run fails; the next one starts over (the failed run's activity keys).
        keys = f"run-{n - 1:04d}" if n % 5 == 1 else ""
        ingest_batch(token, sdk_run("siblings", f"run-{n:04d}", n, length=60,
                                    fail=n % 5 == 0, keys=keys), max_attributes_bytes=256 * 1024)
    check = WorkflowCheck.objects.get(workflow_id="siblings")
    started = time.perf_counter()
    durability_checks.check_workflow(check.pk)
    check_seconds = time.perf_counter() - started
    runs = list(Run.objects.filter(workflow_id="siblings"))
    started = time.perf_counter()
    for run in runs:
        durability.analyse(run)
    panel_seconds = time.perf_counter() - started
    log(f"  durability: one check of {siblings} runs {check_seconds:.2f}s, "
        f"the panel on each run {panel_seconds:.2f}s")
    return {"siblings": siblings, "check_seconds": round(check_seconds, 3),
            "panel_each_run_seconds": round(panel_seconds, 3),
            "check_speedup": round(panel_seconds / check_seconds, 1)}


# --- 3. the page at scale -----------------------------------------------------------------------


def page_at_scale(acme, agent, token, viewer, runs: int, per_run: int, repeat: int) -> dict:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from governance import counts
    from governance.models import Finding, WorkflowCheck
    from governance.vocabulary import RUN_RULES, Outcome
    from history.models import Run
    from history.seeding import bulk_load, small_history

    rng = random.Random(7)
    start = datetime.now(UTC) - timedelta(days=30)
    started = time.perf_counter()
    bulk_load(token, (small_history(f"scale-{n:07d}", "r", start + timedelta(seconds=2 * n), rng)
                      for n in range(runs)))
    run_ids = list(Run.objects.filter(workflow_id__startswith="scale-").values_list("pk",
                                                                                    flat=True))
    now = datetime.now(UTC)
    rules = list(RUN_RULES)
    outcomes = list(Outcome)
    batch = []
    for index, run_pk in enumerate(run_ids):
        for k in range(per_run):
            batch.append(Finding(
                namespace=acme, run_id=run_pk, agent=agent, rule=rules[(index + k) % len(rules)],
                key=f"bench:{k}", event_id=k + 1, event_ids=[k + 1], subject="shell_exec",
                summary="called shell_exec, which is not in support-bot's allow-list",
                received_at=now - timedelta(seconds=rng.uniform(0, 30 * 86400)),
            ))
        if len(batch) >= 20_000:
            Finding.objects.bulk_create(batch, batch_size=5000)
            batch = []
    Finding.objects.bulk_create(batch, batch_size=5000)
    WorkflowCheck.objects.bulk_create(
        [WorkflowCheck(namespace=acme, workflow_id=f"scale-{n:07d}", workflow_type="batch",
                       due=False, checked_at=now, outcome=outcomes[n % len(outcomes)], runs=1)
         for n in range(runs)], batch_size=5000)
    counts.recount(acme)  # the findings were made here, not through detection: count them
    seed_seconds = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE governance_finding")
        cursor.execute("VACUUM ANALYZE governance_workflowcheck")
        cursor.execute("VACUUM ANALYZE history_run")
    log(f"  seeded {runs:,} runs and {runs * per_run:,} findings in {seed_seconds:.0f}s")

    client = Client()
    client.force_login(viewer)
    url = "/namespaces/acme/governance/"
    for _ in range(3):
        assert client.get(url).status_code == 200
    with CaptureQueriesContext(connection) as captured:
        client.get(url)
    # Copied now: the next request's request_started signal empties the connection's log.
    queries = list(captured.captured_queries)
    main = next(q["sql"] for q in queries
                if 'FROM "governance_finding"' in q["sql"] and "LIMIT 51" in q["sql"])
    server, baseline = [], []
    for _ in range(repeat):
        begun = time.perf_counter()
        response = client.get(url)
        server.append(time.perf_counter() - begun)
        assert response.status_code == 200
        with connection.cursor() as cursor:
            begun = time.perf_counter()
            cursor.execute(main)
            cursor.fetchall()
            baseline.append(time.perf_counter() - begun)
    figures = {
        "runs": runs, "findings": runs * per_run, "seed_seconds": round(seed_seconds, 1),
        "queries": len(queries),
        "slowest_queries_ms": sorted((round(float(q["time"]) * 1000, 1) for q in queries),
                                     reverse=True)[:3],
        "p50_ms": ms(statistics.median(server)), "p95_ms": ms(percentile(server, 0.95)),
        "main_sql_p50_ms": ms(statistics.median(baseline)),
    }
    figures["page_ratio_p50"] = round(figures["p50_ms"] / figures["main_sql_p50_ms"], 1)
    log(f"  page: p50 {figures['p50_ms']} ms, p95 {figures['p95_ms']} ms, "
        f"main SQL p50 {figures['main_sql_p50_ms']} ms, {figures['queries']} queries")
    return figures


# --- 4. retention of a long run -----------------------------------------------------------------


def retention_of_a_long_run(length: int) -> dict:
    from django.utils import timezone

    from access.models import Agent, Namespace, Token
    from audit.chain import verify
    from governance.models import RetentionPolicy
    from governance.retention import apply_retention
    from history.seeding import bulk_load, long_history

    archive = Namespace.objects.create(slug="archive")  # only the long run lives here
    token, _ = Token.issue(agent=Agent.objects.create(namespace=archive, name="archiver"))
    rng = random.Random(3)
    history = long_history("long", "r", length - 1, datetime(2026, 1, 1, tzinfo=UTC), rng)
    history.append({**history[-1], "event_id": length, "type": "workflow.completed",
                    "attributes": {}})
    bulk_load(token, [history])
    RetentionPolicy.objects.create(namespace=archive, keep_days=1)
    started = time.perf_counter()
    report = apply_retention(now=timezone.now() + timedelta(days=2), namespace=archive)
    seconds = time.perf_counter() - started
    deleted = [run for run in report.deleted if run["workflow_id"] == "long"]
    check = verify()
    log(f"  retention: {len(report.deleted)} runs deleted (one of {length} events) in "
        f"{seconds:.1f}s; audit chain intact: {check.intact}")
    return {"events": deleted[0]["event_count"] if deleted else 0,
            "runs_deleted": len(report.deleted), "seconds": round(seconds, 2),
            "audit_chain_intact": check.intact}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--findings-per-run", type=int, default=10)
    parser.add_argument("--ingest-runs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--siblings", type=int, default=100)
    parser.add_argument("--large", type=int, default=51_200)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--parts", default="1234",
                        help="which parts to run, by number (default: all, 1234)")
    args = parser.parse_args()

    recreate(args.database_url)
    set_up_django(args.database_url)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    acme, agent, token, viewer = set_up_namespace()
    result = {"loadavg_start": os.getloadavg()[0]}
    if "1" in args.parts:
        log("1. ingest overhead")
        result["ingest"] = ingest_overhead(token, args.ingest_runs, args.batch)
        result["ingest"]["batch"] = args.batch
    if "2" in args.parts:
        log("2. durability across a workflow id")
        result["durability"] = durability_scaling(token, args.siblings)
    if "3" in args.parts:
        log("3. the page at scale")
        result["page"] = page_at_scale(acme, agent, token, viewer, args.runs,
                                       args.findings_per_run, args.repeat)
    if "4" in args.parts:
        log("4. retention of a long run")
        result["retention"] = retention_of_a_long_run(args.large)
    result["loadavg_end"] = os.getloadavg()[0]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
