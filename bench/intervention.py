#!/usr/bin/env python3
"""Command delivery latency through the pull channel, and the dashboard with agents waiting.

    .venv/bin/python bench/intervention.py [--agents 50] [--commands 200] [--rate 4]
                                           [--burst 200] [--page-requests 60] [--rounds 3]
                                           [--database-url URL] [--keep]

What one run does (see bench/README.md for how to read the figures):

1. Creates a scratch PostgreSQL database (default `flightdeck_bench_intervention`, dropped and
   recreated unless --keep) and migrates it; starts a private redis-server, a Celery worker
   (`-Q commands,slow -c 2`, prefork, with beat) and uvicorn (`dashboard.asgi`, one process),
   production-like (DEBUG=0, default timeouts), on free ports. The processes are the ones the
   end-to-end tests start (tests/interventions/services.py).
2. Creates a namespace with --agents agents, one agent token and one open run each (through
   the ingest API), and an operator with a user token and a signed-in session.
3. Baseline, in the same run: the run page (`GET /runs/<uuid>/`, signed in) timed with no agent
   waiting and with every agent holding a long-poll (`GET /api/v1/agent/commands?wait=60`),
   alternating --rounds times between the two so that drift on a shared machine hits both.
4. With every agent long-polling, sends --commands commands through the API
   (`POST /api/v1/runs/<uuid>/commands`, kind signal, from one client, round-robin over the
   runs) at --rate per second; each agent acknowledges a command as soon as its long-poll
   returns it, then polls again. Times, per command, from its `created_at` (the server's clock;
   same machine) to the long-poll response read by the agent, and to the ack response read.
   Then --burst more, back to back: what one uvicorn process sustains, and the latency then.
5. Checks that every command was handed out exactly once and is applied in the database.
6. Prints a summary and, as its last line, one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import math
import os
import secrets
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.interventions.services import (  # noqa: E402 - after the path is set
    REDIS_SERVER,
    AsgiServer,
    CeleryWorker,
    RedisServer,
    app_environment,
    wait_until,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/flightdeck_bench_intervention"
RETURNED_P50_TARGET_MS = 100.0
RETURNED_P95_TARGET_MS = 300.0
PAGE_RATIO_TARGET = 1.25
POLL_WAIT_SECONDS = 60


def log(message: str = "") -> None:
    print(message, flush=True)


class BenchFailure(Exception):
    """The benchmark could not produce a trustworthy figure; the message says why."""


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def process_cpu_seconds(root_pids: list[int]) -> float:
    """CPU seconds used so far by these processes and their descendants (live ones)."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry.name)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, pending, seen = 0.0, list(root_pids), set()
    while pending:
        pid = pending.pop()
        if pid in seen or pid not in stats:
            continue
        seen.add(pid)
        total += (int(stats[pid][11]) + int(stats[pid][12])) / os.sysconf("SC_CLK_TCK")
        pending += children.get(pid, [])
    return total


def postgres_cpu_seconds() -> float:
    """CPU seconds of the local PostgreSQL server: the postmaster, its live children, and (in
    the postmaster's cutime/cstime) the children that exited, such as a request's backend."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[str, list[str]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue
            name = text[text.index("(") + 1:text.rindex(")")]
            stats[int(entry.name)] = (name, text.rsplit(")", 1)[1].split())
    total = 0.0
    for name, fields in stats.values():
        if name != "postgres":
            continue
        parent = stats.get(int(fields[1]), ("", []))[0]
        total += (int(fields[11]) + int(fields[12])) / ticks
        if parent != "postgres":  # the postmaster: add its exited children
            total += (int(fields[13]) + int(fields[14])) / ticks
    return total


def own_cpu_seconds() -> float:
    """CPU seconds used by this process alone (its children are the servers)."""
    times = os.times()
    return times.user + times.system


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


# --- the scratch database ---------------------------------------------------------------------


class ScratchDatabase:
    """Dropped and recreated at the start and dropped at the end, unless --keep. Refuses a
    database whose name does not contain "bench"."""

    def __init__(self, url: str, keep: bool):
        parts = urlsplit(url)
        if parts.scheme not in ("postgres", "postgresql"):
            raise BenchFailure(f"--database-url must be a postgres:// URL, not {url!r}")
        self.url, self.keep = url, keep
        self.name = unquote(parts.path.lstrip("/"))
        self.admin_url = urlunsplit(parts._replace(path="/postgres"))
        if "bench" not in self.name:
            raise BenchFailure(
                f"refusing to use database {self.name!r}: its name does not contain 'bench'"
            )

    def prepare(self) -> None:
        ident = sql.Identifier(self.name)
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [self.name]
            ).fetchone()
            if exists and not self.keep:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(ident))
                exists = None
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))

    def drop(self) -> None:
        if self.keep:
            return
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name))
            )

    def connections(self) -> int:
        """Server connections open on this database now (other than the one asking)."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            (count,) = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [self.name]
            ).fetchone()
        return count


def production_environment(db: ScratchDatabase, redis_url: str, var_dir: Path,
                           secret_key: str) -> dict[str, str]:
    """A production-like server's environment: DEBUG off, the default timeouts."""
    return app_environment(
        database_url=db.url, redis_url=redis_url, var_dir=var_dir, secret_key=secret_key,
        fast=False, DEBUG="0", SECURE_SSL_REDIRECT="0", SESSION_COOKIE_SECURE="0",
        CSRF_COOKIE_SECURE="0", SECURE_HSTS_SECONDS="0", LOG_LEVEL="WARNING",
    )


def set_up_django(env: dict[str, str]) -> None:
    """This process reads and writes the same database directly (set-up and checks)."""
    os.environ.update({name: env[name] for name in (
        "DATABASE_URL", "DJANGO_SETTINGS_MODULE", "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS",
        "SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE",
        "SECURE_HSTS_SECONDS", "LOG_LEVEL", "FLIGHTDECK_VAR_DIR", "REDIS_URL",
        "CELERY_BROKER_URL",
    )})
    import django

    django.setup()


# --- HTTP ---------------------------------------------------------------------------------------


class AsyncHttp:
    """HTTP/1.1 on one keep-alive connection, over asyncio streams: an agent's client."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._reader = self._writer = None

    async def request(self, method: str, path: str, headers: dict[str, str],
                      body: bytes = b"") -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                 f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await self._writer.drain()
        status_line = await self._reader.readline()
        if not status_line:
            await self.close()
            raise ConnectionError("the server closed the connection")
        status = int(status_line.split()[1])
        length, chunked, close = 0, False, False
        while (line := await self._reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "connection" and value.lower() == "close":
                close = True
        if chunked:
            parts = []
            while (size := int((await self._reader.readline()).split(b";")[0], 16)) > 0:
                parts.append(await self._reader.readexactly(size))
                await self._reader.readline()
            await self._reader.readline()
            data = b"".join(parts)
        else:
            data = await self._reader.readexactly(length)
        if close:
            await self.close()
        return status, data


class PageClient:
    """Blocking requests on one keep-alive connection, for the dashboard and the operator."""

    def __init__(self, port: int, headers: dict[str, str]):
        self.port, self.headers = port, headers
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            self.connection.request(method, path, body=data, headers=headers)
            response = self.connection.getresponse()
        except (http.client.HTTPException, OSError):
            self.connection.close()  # a dropped keep-alive connection: once more, afresh
            self.connection.request(method, path, body=data, headers=headers)
            response = self.connection.getresponse()
        return response.status, response.read()

    def time_page(self, path: str, count: int) -> list[float]:
        latencies = []
        for _ in range(count):
            started = time.perf_counter()
            status, _ = self.request("GET", path)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                raise BenchFailure(f"GET {path} answered {status}")
        return latencies


# --- the agents -------------------------------------------------------------------------------


@dataclass
class Agent:
    pk: int
    token: str
    run_uuid: str


@dataclass
class Deliveries:
    returned: dict[str, float] = field(default_factory=dict)  # command id -> wall clock
    acked: dict[str, float] = field(default_factory=dict)
    created: dict[str, float] = field(default_factory=dict)  # from the command message
    repeats: int = 0
    errors: list[str] = field(default_factory=list)


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def agent_loop(agent: Agent, port: int, deliveries: Deliveries) -> None:
    """Long-poll, ack each command the moment it arrives, poll again; until cancelled."""
    http = AsyncHttp("127.0.0.1", port)
    auth = {"Authorization": f"Bearer {agent.token}"}
    ack = json.dumps({"status": "applied", "detail": "bench"}).encode()
    try:
        while True:
            try:
                status, body = await http.request(
                    "GET", f"/api/v1/agent/commands?wait={POLL_WAIT_SECONDS}", auth
                )
            except (ConnectionError, asyncio.IncompleteReadError, OSError) as exc:
                deliveries.errors.append(f"agent {agent.pk} poll: {exc}")
                await http.close()
                await asyncio.sleep(0.5)
                continue
            received = time.time()
            if status != 200:
                deliveries.errors.append(f"agent {agent.pk} poll answered {status}: {body[:200]}")
                await asyncio.sleep(0.5)
                continue
            for command in json.loads(body)["commands"]:
                if command["id"] in deliveries.returned:
                    deliveries.repeats += 1
                    continue
                deliveries.returned[command["id"]] = received
                deliveries.created[command["id"]] = _epoch(command["created_at"])
                status, answer = await http.request(
                    "POST", f"/api/v1/agent/commands/{command['id']}/ack",
                    {**auth, "Content-Type": "application/json"}, ack,
                )
                if status != 200:
                    deliveries.errors.append(f"ack {command['id']}: {status} {answer[:200]}")
                deliveries.acked[command["id"]] = time.time()
    finally:
        await http.close()


class Agents:
    """The agents' long-poll loops, on an asyncio loop in a thread of their own."""

    def __init__(self, agents: list[Agent], port: int, redis):
        self.agents, self.port, self.redis = agents, port, redis
        self.deliveries = Deliveries()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.tasks: list[asyncio.Task] = []

    def _subscribed(self) -> int:
        from interventions.wakeups import channel

        counts = self.redis.pubsub_numsub(*[channel(agent.pk) for agent in self.agents])
        return sum(1 for _, count in counts if count)

    def start_waiting(self) -> None:
        async def start():
            self.tasks = [asyncio.create_task(agent_loop(agent, self.port, self.deliveries))
                          for agent in self.agents]

        asyncio.run_coroutine_threadsafe(start(), self.loop).result()
        wait_until(lambda: self._subscribed() == len(self.agents), timeout=60, interval=0.1,
                   what=f"all {len(self.agents)} long-polls to wait")

    def stop_waiting(self) -> None:
        async def stop():
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result()
        # The server cancels a long-poll whose client went away, and its subscription with it.
        wait_until(lambda: self._subscribed() == 0, timeout=POLL_WAIT_SECONDS + 10,
                   interval=0.1, what="the long-polls to end")

    def close(self) -> None:
        async def cancel():
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cancel(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


# --- the run ----------------------------------------------------------------------------------


def create_population(server: AsgiServer, count: int) -> tuple[list[Agent], str, str]:
    """Agents with tokens and one open run each (ingested over HTTP), and an operator:
    (agents, the operator's user token, a signed-in session cookie)."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from access.models import Agent as AgentRow
    from access.models import Membership, Namespace, Token
    from history.models import Run

    namespace = Namespace.objects.create(slug="bench", name="Bench")
    operator = get_user_model().objects.create_user("operator", password=secrets.token_hex(16))
    Membership.objects.create(user=operator, namespace=namespace, role="operator")
    _, operator_token = Token.issue(user=operator)
    browser = Client()
    browser.force_login(operator)
    session = f"sessionid={browser.cookies['sessionid'].value}"

    agents = []
    for number in range(count):
        row = AgentRow.objects.create(namespace=namespace, name=f"agent-{number:02d}")
        _, token = Token.issue(agent=row)
        client = PageClient(server.port, {"Authorization": f"Bearer {token}"})
        workflow_id = f"bench-wf-{number:02d}"
        status, body = client.request("POST", "/api/v1/ingest", {"events": [
            {"workflow_id": workflow_id, "run_id": "r1", "event_id": 1,
             "type": "workflow.started", "time": "2026-11-26T09:00:00Z",
             "workflow_type": "support"},
        ]})
        if status != 200:
            raise BenchFailure(f"ingest answered {status}: {body[:300]!r}")
        run = Run.objects.get(workflow_id=workflow_id)
        agents.append(Agent(pk=row.pk, token=token, run_uuid=str(run.uuid)))
    return agents, operator_token, session


def measure_pages(page: PageClient, path: str, agents: Agents, db: ScratchDatabase, rounds: int,
                  per_block: int) -> tuple[list[float], list[float], int]:
    """The run page, alternating: no agent waiting, then every agent waiting. Also returns
    the most database connections seen while they waited."""
    idle, waiting, most = [], [], 0
    page.time_page(path, 10)  # warm-up
    for _ in range(rounds):
        idle += page.time_page(path, per_block)
        agents.start_waiting()
        waiting += page.time_page(path, per_block)
        most = max(most, db.connections())
        agents.stop_waiting()
    return idle, waiting, most


def send_commands(operator: PageClient, agents: list[Agent], count: int,
                  rate: float) -> list[str]:
    """`count` commands, round-robin over the agents' runs, `rate` per second (0: back to
    back, as fast as the server answers)."""
    ids = []
    started = time.perf_counter()
    for number in range(count):
        if rate:
            time.sleep(max(0.0, started + number / rate - time.perf_counter()))
        agent = agents[number % len(agents)]
        status, body = operator.request(
            "POST", f"/api/v1/runs/{agent.run_uuid}/commands",
            {"kind": "signal", "signal_name": f"nudge-{number}", "reason": "bench"},
        )
        if status != 201:
            raise BenchFailure(f"POST commands answered {status}: {body[:300]!r}")
        ids.append(json.loads(body)["id"])
    return ids


def summarise(name: str, values_ms: list[float]) -> str:
    return (f"{name}: p50 {percentile(values_ms, 50):.1f} ms, p95 {percentile(values_ms, 95):.1f}"
            f" ms, max {max(values_ms):.1f} ms (n={len(values_ms)})")


@dataclass
class Phase:
    """One batch of commands and what came of it."""

    commands: int
    sent_seconds: float
    returned_ms: list[float]
    acked_ms: list[float]
    finished_ms: list[float]
    busy: float  # share of the machine's CPU, all processes
    ours: float  # share used by uvicorn, the worker, Redis and this client
    others: float  # share used by processes other than these and PostgreSQL

    def figures(self, prefix: str = "") -> dict:
        return {
            f"{prefix}commands": self.commands,
            f"{prefix}rate_per_s": round(self.commands / self.sent_seconds, 1),
            **{f"{prefix}created_to_{name}_p{pct}_ms": round(percentile(values, pct), 1)
               for name, values in (("returned", self.returned_ms), ("acked", self.acked_ms),
                                    ("finished", self.finished_ms))
               for pct in (50, 95)},
            f"{prefix}machine_busy": round(self.busy, 2),
            f"{prefix}machine_busy_ours": round(self.ours, 2),
            f"{prefix}machine_busy_others": round(self.others, 2),
        }


def command_phase(name: str, agents: Agents, population: list[Agent], operator: PageClient,
                  count: int, rate: float, processes: dict[str, list[int]]) -> Phase:
    """Send `count` commands at `rate` while every agent waits; check and time them."""
    from interventions.models import Command

    agents.start_waiting()
    cpu_before = {label: process_cpu_seconds(pids) for label, pids in processes.items()}
    cpu_before["client"] = own_cpu_seconds()
    busy_before, postgres_before = machine_busy_seconds(), postgres_cpu_seconds()
    started = time.perf_counter()
    ids = send_commands(operator, population, count, rate)
    sent = time.perf_counter() - started
    wait_until(lambda: len(agents.deliveries.acked) >= len(ids), timeout=120, interval=0.1,
               what=f"all {len(ids)} commands to be acknowledged")
    capacity = (time.perf_counter() - started) * (os.cpu_count() or 1)
    busy = (machine_busy_seconds() - busy_before) / capacity
    cpu = {label: process_cpu_seconds(pids) - cpu_before[label]
           for label, pids in processes.items()}
    cpu["client"] = own_cpu_seconds() - cpu_before["client"]
    own = sum(cpu.values()) / capacity
    postgres = (postgres_cpu_seconds() - postgres_before) / capacity
    others = max(0.0, busy - own - postgres)
    agents.stop_waiting()
    deliveries, agents.deliveries = agents.deliveries, Deliveries()

    log(f"{name}: {len(ids)} commands sent in {sent:.1f} s ({len(ids) / sent:.1f}/s), all "
        f"acknowledged; load average {loadavg()}")
    log("  CPU per command: " + ", ".join(
        f"{label} {seconds / len(ids) * 1000:.1f} ms" for label, seconds in cpu.items()))
    log(f"  the machine was {busy:.0%} busy: uvicorn, the worker, Redis and this client "
        f"{own:.0%}, PostgreSQL {postgres:.0%} (for every database on it), other processes "
        f"{others:.0%}")
    if others > 0.15:
        log("  WARNING: other processes kept the machine busy: latencies include waiting for "
            "a CPU; compare with a run on a quiet machine")
    if deliveries.errors:
        raise BenchFailure("agent errors: " + "; ".join(deliveries.errors[:5]))
    if set(deliveries.returned) != set(ids) or deliveries.repeats:
        raise BenchFailure(f"handed out {len(deliveries.returned)} distinct commands with "
                           f"{deliveries.repeats} repeats; expected {len(ids)} exactly once")
    rows = list(Command.objects.filter(pk__in=ids).values_list(
        "state", "created_at", "dispatched_at", "delivered_at", "finished_at", "attempts", "pk"))
    if any(row[0] != "applied" for row in rows) or len(rows) != len(ids):
        raise BenchFailure("not every command is applied in the database")
    phase = Phase(
        commands=len(ids), sent_seconds=sent,
        returned_ms=[(deliveries.returned[i] - deliveries.created[i]) * 1000 for i in ids],
        acked_ms=[(deliveries.acked[i] - deliveries.created[i]) * 1000 for i in ids],
        finished_ms=[(row[4] - row[1]).total_seconds() * 1000 for row in rows],
        busy=busy, ours=own, others=others,
    )
    log("  " + summarise("created -> returned to the waiting long-poll", phase.returned_ms))
    log("  " + summarise("created -> ack response read by the agent  ", phase.acked_ms))
    log("  " + summarise("created -> finished_at (the row)           ", phase.finished_ms))
    # Where the time goes, from the row's own stamps (the last attempt's dispatch).
    for label, first, last in (("created -> dispatched (enqueue, worker claim)", 1, 2),
                               ("dispatched -> delivered (wake-up, hand-out) ", 2, 3),
                               ("delivered -> finished (response, ack)       ", 3, 4)):
        log("    " + summarise(label, [(row[last] - row[first]).total_seconds() * 1000
                                       for row in rows]))
    log(f"  attempts per command: max {max(row[5] for row in rows)}")
    # A wake-up that never arrives shows as a command returned only when a later poll reads
    # the database: name the slow ones, with their own stamps, to tell where they waited.
    for row in sorted(rows, key=lambda row: deliveries.returned[str(row[6])])[-3:]:
        waited = (deliveries.returned[str(row[6])] - row[1].timestamp()) * 1000
        if waited > 1000:
            log(f"  SLOW: command {row[6]} returned {waited:.0f} ms after it was created; "
                f"dispatched +{(row[2] - row[1]).total_seconds() * 1000:.0f} ms, last handed "
                f"out +{(row[3] - row[1]).total_seconds() * 1000:.0f} ms, attempt {row[5]}")
    return phase


def run(args, db: ScratchDatabase, work: Path) -> dict:
    secret_key = secrets.token_urlsafe(50)
    redis = RedisServer(work / "redis").start()
    env = production_environment(db, redis.url, work / "var", secret_key)
    set_up_django(env)
    from django.core.management import call_command

    log(f"database {db.name}: migrating ...")
    call_command("migrate", verbosity=0, interactive=False)
    from django.db import connections

    connections.close_all()

    server = AsgiServer(env=env, log_path=work / "uvicorn.log", access_log=False)
    worker = CeleryWorker(env=env, log_path=work / "worker.log", beat=True)
    processes = [server, worker, redis]
    agents = None
    burst = None
    try:
        server.start()
        worker.start()
        log(f"redis-server :{redis.port}, uvicorn :{server.port} (pid {server.pid}), "
            f"celery worker -c 2 (pid {worker.pid}); load average {loadavg()}")
        population, operator_token, session = create_population(server, args.agents)
        connections.close_all()
        agents = Agents(population, server.port, redis.client())

        page_path = f"/runs/{population[0].run_uuid}/"
        page = PageClient(server.port, {"Cookie": session})
        idle, waiting, db_connections = measure_pages(
            page, page_path, agents, db, args.rounds, args.page_requests
        )
        idle_ms = [value * 1000 for value in idle]
        waiting_ms = [value * 1000 for value in waiting]
        log(summarise("run page, no agent waiting", idle_ms))
        log(summarise(f"run page, {args.agents} agents waiting", waiting_ms))
        log(f"database connections while {args.agents} agents waited: {db_connections}")

        operator = PageClient(server.port, {"Authorization": f"Bearer {operator_token}"})
        pids = {"uvicorn": [server.pid], "worker": [worker.pid], "redis": [redis.pid]}
        paced = command_phase(f"paced at {args.rate:g}/s", agents, population, operator,
                              args.commands, args.rate, pids)
        if args.burst:
            burst = command_phase("burst, back to back", agents, population, operator,
                                  args.burst, 0, pids)
    except BaseException:
        for process in processes:
            if process.is_running() and process is not redis:
                log(f"--- {process.name} log tail:\n{process.log_tail(40)}")
        raise
    finally:
        if agents is not None:
            agents.close()
        connections.close_all()
        for process in processes:
            process.stop()

    ratio_p50 = statistics.median(waiting_ms) / statistics.median(idle_ms)
    ratio_p95 = percentile(waiting_ms, 95) / percentile(idle_ms, 95)
    figures = {
        "agents": args.agents,
        **paced.figures(),
        "page_idle_p50_ms": round(percentile(idle_ms, 50), 1),
        "page_idle_p95_ms": round(percentile(idle_ms, 95), 1),
        "page_waiting_p50_ms": round(percentile(waiting_ms, 50), 1),
        "page_waiting_p95_ms": round(percentile(waiting_ms, 95), 1),
        "page_ratio_p50": round(ratio_p50, 3),
        "page_ratio_p95": round(ratio_p95, 3),
        "db_connections_waiting": db_connections,
        **(burst.figures("burst_") if burst else {}),
    }
    met = (figures["created_to_returned_p50_ms"] <= RETURNED_P50_TARGET_MS
           and figures["created_to_returned_p95_ms"] <= RETURNED_P95_TARGET_MS
           and ratio_p50 <= PAGE_RATIO_TARGET)
    log(f"page ratio (waiting / idle): p50 {ratio_p50:.2f}, p95 {ratio_p95:.2f} "
        f"(target p50 <= {PAGE_RATIO_TARGET}); targets "
        f"{'met' if met else 'NOT met'}: created -> returned p50 <= {RETURNED_P50_TARGET_MS:.0f} "
        f"ms, p95 <= {RETURNED_P95_TARGET_MS:.0f} ms (paced phase)")
    figures["targets_met"] = met
    return figures


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--rate", type=float, default=4,
                        help="commands per second in the paced phase (0: back to back)")
    parser.add_argument("--burst", type=int, default=200,
                        help="commands sent back to back after the paced phase (0: none)")
    parser.add_argument("--page-requests", type=int, default=60,
                        help="run page requests per block (each round has two blocks)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--keep", action="store_true",
                        help="neither recreate the database first nor drop it at the end")
    args = parser.parse_args(argv)
    for name in ("agents", "commands", "page_requests", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be 1 or more")
    if args.rate < 0 or args.burst < 0:
        parser.error("--rate and --burst must not be negative")
    return args


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    if not os.access(REDIS_SERVER, os.X_OK):
        print(f"bench: no redis-server binary at {REDIS_SERVER}", file=sys.stderr)
        return 2
    try:
        db = ScratchDatabase(args.database_url, args.keep)
    except BenchFailure as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="flightdeck-bench-intervention-") as work:
        try:
            db.prepare()
            summary = run(args, db, Path(work))
        except BenchFailure as exc:
            print(f"bench: FAILED: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("bench: interrupted", file=sys.stderr)
            return 130
        finally:
            db.drop()
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
