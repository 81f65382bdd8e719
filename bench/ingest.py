#!/usr/bin/env python3
"""Ingest throughput benchmark: POST /api/v1/ingest on a production server against raw COPY.

    .venv/bin/python bench/ingest.py [--events N] [--batch 1000] [--connections 2]
                                     [--workers W] [--worker-class sync|gthread]
                                     [--database-url URL] [--keep] [--profile]

What one run does (see bench/README.md for how to read the figures):

1. Creates a scratch PostgreSQL database (default `flightdeck_bench`, dropped and recreated
   unless --keep), migrates it and issues an agent token with `create_agent_token`.
2. Builds every request body before the clock: runs of --run-length events (workflow.started,
   activity and decision events with LLM/tool attributes, a closing event), about 0.5% of the
   events carrying a fake credential, JSON-encoded with orjson into batches of --batch events.
   Runs are assigned to connections (run i to connection i mod C), so two connections never
   write the same run and the figure measures throughput, not row-lock waits.
3. Starts gunicorn (dashboard.wsgi, DEBUG=0, bound to 127.0.0.1 on a free port), waits until it
   answers, then sends the batches over C persistent HTTP/1.1 connections, one per thread, while
   a sampler thread records the server's RSS (master + workers) every 100 ms.
4. Checks that every response is 200 with every event stored and that the database holds
   exactly N events, with every run's hash chain complete; fails loudly otherwise.
5. Baseline: COPYs the very rows the app stored (read back out of history_event before the
   clock) into `bench_copy` (LIKE history_event INCLUDING ALL, plus the run foreign key), in
   batches of the same size over the same number of connections, one transaction per batch.
6. Prints a summary, then as its last line one JSON object with the figures.

--profile instead runs the same ingest path in-process (django.setup() and
history.ingest.ingest_batch on pre-parsed bodies, no HTTP) for --profile-events events, once
without and once under cProfile, and prints the top functions to stderr.
"""

from __future__ import annotations

import argparse
import cProfile
import http.client
import io
import math
import os
import pstats
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import orjson
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/flightdeck_bench"
INGEST_PATH = "/api/v1/ingest"
# The columns history.ingest COPYs (its _COPY_COLUMNS): the baseline writes the same ones, so
# both sides let the table assign `id`.
COPY_COLUMNS = (
    "run_id", "event_id", "type", "time", "time_text", "identity", "refs", "attributes",
    "masked_attributes", "secret_findings", "salt", "header", "chain_hash", "received_at",
    "received_seq", "token_id",
)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def log(message: str = "") -> None:
    print(message, flush=True)


class BenchFailure(Exception):
    """The benchmark could not produce a trustworthy figure; the message says why."""


# --- workload ---------------------------------------------------------------------------------

_TEXT = (
    "the customer asked about a refund for order that arrived late and damaged please check "
    "shipping status invoice billing account plan upgrade downgrade cancel subscription policy "
    "agent should summarize ticket history escalate to human reviewer when confidence is low "
    "search knowledge base for warranty terms return window carrier tracking number address "
    "update payment method card declined retry charge next cycle apology credit voucher issue "
    "draft reply in a friendly tone include links to relevant articles and confirm resolution "
    "compare options cost latency quality model answer tool result citation source document"
)
WORDS = _TEXT.split()
MODELS = ("gpt-4o-mini", "claude-sonnet-4", "llama-3.1-70b-instruct", "mistral-large")
TOOLS = ("search_kb", "get_order", "lookup_customer", "create_ticket", "send_email", "refund")
WORKFLOW_TYPES = ("support.triage", "billing.dispute", "research.report")
TEAMS = ("support", "billing", "research", "growth")
DECISIONS = ("call_tool", "call_llm", "reply", "escalate", "wait_for_customer")
UPPER_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
BASE_TIME = datetime(2026, 11, 1, 9, 0, 0, tzinfo=UTC)
SECRET_RATE = 0.005


def _sentence(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(low, high)))


def _token(rng: random.Random, length: int, alphabet: str = ALNUM) -> str:
    return "".join(rng.choices(alphabet, k=length))


def _time_text(moment: datetime) -> str:
    # Nanosecond precision, as Temporal writes it: the text is stored exactly as sent.
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


def _fake_credential(rng: random.Random, form: int) -> tuple[str, str]:
    """(key, value) carrying a credential the scanner must find. Built at runtime so that no
    credential-looking literal sits in the source."""
    if form == 0:
        key_id = "AKIA" + _token(rng, 16, UPPER_DIGITS)
        return "debug", f"retrying upload with access key {key_id} after 403"
    if form == 1:
        return "note", "clone failed with token " + "ghp" + "_" + _token(rng, 36)
    return "api" + "_key", _token(rng, 32)


class RunBuilder:
    """One run's events, in event_id order, with plausible LLM/tool attributes."""

    def __init__(self, rng: random.Random, workflow_id: str, index: int):
        self.rng = rng
        self.workflow_id = workflow_id
        self.run_id = str(uuid.UUID(int=rng.getrandbits(128)))
        self.start = BASE_TIME + timedelta(seconds=index * 53)
        self.workflow_type = rng.choice(WORKFLOW_TYPES)
        self.identity = f"worker-{rng.randint(1, 8)}@bench-host"
        self.secret_events = 0
        self.activity: dict = {}

    def event(self, event_id: int, event_type: str, attributes: dict, refs=None) -> dict:
        moment = self.start + timedelta(milliseconds=event_id * 400 + self.rng.randint(0, 300))
        item = {
            "workflow_id": self.workflow_id,
            "run_id": self.run_id,
            "event_id": event_id,
            "type": event_type,
            "time": _time_text(moment),
            "identity": self.identity,
            "attributes": attributes,
        }
        if refs:
            item["refs"] = refs
        if event_type == "workflow.started":
            item["workflow_type"] = self.workflow_type
        return item

    def started(self) -> dict:
        rng = self.rng
        return self.event(1, "workflow.started", {
            "labels": {"team": rng.choice(TEAMS), "env": "prod", "tier": rng.choice("abc")},
            "task_queue": f"{self.workflow_type}-queue",
            "input": {
                "ticket_id": f"T-{rng.randint(100000, 999999)}",
                "subject": _sentence(rng, 6, 12),
                "body": _sentence(rng, 25, 45),
                "customer": {"id": f"cus_{_token(rng, 14)}", "plan": rng.choice(("free", "pro"))},
            },
        })

    def middle(self, event_id: int) -> dict:
        rng = self.rng
        step = (event_id - 2) % 4
        if step == 0:
            kind = rng.choice(("llm", "tool"))
            tool = rng.choice(TOOLS)
            self.activity = {
                "activity_type": "llm.chat" if kind == "llm" else f"tool.{tool}",
                "kind": kind,
                "activity_id": f"act-{event_id}",
            }
            if kind == "llm":
                payload = {
                    "model": rng.choice(MODELS),
                    "temperature": round(rng.uniform(0, 1), 2),
                    "max_tokens": rng.choice((256, 512, 1024)),
                    "messages": [
                        {"role": "system", "content": _sentence(rng, 6, 12)},
                        {"role": "user", "content": _sentence(rng, 20, 40)},
                    ],
                }
            else:
                payload = {
                    "tool": tool,
                    "arguments": {
                        "query": _sentence(rng, 6, 14),
                        "limit": rng.choice((5, 10, 20)),
                        "filters": {
                            "status": rng.choice(("open", "pending", "closed")),
                            "customer_id": f"cus_{_token(rng, 14)}",
                        },
                    },
                }
            attributes = {**self.activity, "attempt": 1, "input": payload,
                          "schedule_to_close_s": rng.choice((30, 60, 300))}
            event = self.event(event_id, "activity.scheduled", attributes)
        elif step == 1:
            attributes = {
                **self.activity,
                "attempt": 1,
                "worker": self.identity,
                "call_id": f"call_{_token(rng, 24)}",
                "queue_latency_ms": rng.randint(1, 400),
                "heartbeat_timeout_s": 30,
                "note": _sentence(rng, 16, 30),
            }
            event = self.event(
                event_id, "activity.started", attributes, {"scheduled": event_id - 1}
            )
        elif step == 2:
            if self.activity["kind"] == "llm":
                output = {
                    "text": _sentence(rng, 35, 70),
                    "finish_reason": "stop",
                    "usage": {"prompt_tokens": rng.randint(200, 4000),
                              "completion_tokens": rng.randint(20, 800)},
                }
            else:
                output = {"results": [
                    {"id": f"doc-{rng.randint(1, 99999)}", "title": _sentence(rng, 3, 7),
                     "score": round(rng.random(), 3)}
                    for _ in range(rng.randint(1, 3))
                ]}
            attributes = {
                **self.activity,
                "output": output,
                "duration_ms": rng.randint(20, 9000),
                "cost_usd": round(rng.uniform(0, 0.02), 5),
            }
            event = self.event(event_id, "activity.completed", attributes,
                               {"scheduled": event_id - 2, "started": event_id - 1})
        else:
            attributes = {
                "decision": rng.choice(DECISIONS),
                "reason": _sentence(rng, 15, 35),
                "confidence": round(rng.random(), 3),
                "candidates": [
                    {"action": rng.choice(DECISIONS), "score": round(rng.random(), 3)}
                    for _ in range(rng.randint(2, 4))
                ],
            }
            event = self.event(event_id, "decision.made", attributes)
        if rng.random() < SECRET_RATE:
            key, value = _fake_credential(rng, self.secret_events % 3)
            event["attributes"][key] = value
            self.secret_events += 1
        return event

    def closing(self, event_id: int) -> dict:
        rng = self.rng
        if rng.random() < 0.9:
            return self.event(event_id, "workflow.completed", {
                "result": {"status": "resolved", "summary": _sentence(rng, 15, 30)},
                "duration_s": round(event_id * 0.4, 1),
            })
        return self.event(event_id, "workflow.failed", {
            "error": {"type": "ActivityError", "message": _sentence(rng, 8, 16)},
            "duration_s": round(event_id * 0.4, 1),
        })

    def events(self, length: int) -> list[dict]:
        items = [self.started()]
        items.extend(self.middle(event_id) for event_id in range(2, length))
        if length > 1:
            items.append(self.closing(length))
        return items


@dataclass
class Workload:
    tag: str
    events: int
    runs: int
    secret_events: int
    # Per connection: the request bodies it sends, with the number of events in each.
    bodies: list[list[tuple[bytes, int]]]
    attribute_bytes: list[int] = field(repr=False)

    @property
    def batches(self) -> int:
        return sum(len(per_connection) for per_connection in self.bodies)

    @property
    def body_bytes(self) -> int:
        return sum(len(body) for per_connection in self.bodies for body, _ in per_connection)


def workflow_prefix(tag: str, connection_index: int) -> str:
    return f"bench-{tag}-c{connection_index}-"


def build_workload(
    *, events: int, batch: int, connections: int, run_length: int, runs_in_flight: int,
    tag: str, seed: int,
) -> Workload:
    """All request bodies, before any clock starts. Each connection interleaves the events of
    `runs_in_flight` of its runs at a time (in order within each run), as an SDK batching
    several concurrent workflows would, then cuts that stream into batches."""
    rng = random.Random(seed)
    lengths = [run_length] * (events // run_length)
    if events % run_length:
        lengths.append(events % run_length)
    per_connection_runs: list[list[list[dict]]] = [[] for _ in range(connections)]
    secret_events = 0
    for index, length in enumerate(lengths):
        connection_index = index % connections
        builder = RunBuilder(rng, f"{workflow_prefix(tag, connection_index)}wf{index:06d}", index)
        per_connection_runs[connection_index].append(builder.events(length))
        secret_events += builder.secret_events
    bodies: list[list[tuple[bytes, int]]] = []
    attribute_bytes = []
    for runs in per_connection_runs:
        stream: list[dict] = []
        for start in range(0, len(runs), runs_in_flight):
            group = runs[start : start + runs_in_flight]
            for position in range(max(len(run) for run in group)):
                stream.extend(run[position] for run in group if position < len(run))
        attribute_bytes.extend(len(orjson.dumps(item["attributes"])) for item in stream)
        bodies.append([
            (orjson.dumps({"events": stream[i : i + batch]}), len(stream[i : i + batch]))
            for i in range(0, len(stream), batch)
        ])
    return Workload(tag, events, len(lengths), secret_events, bodies, attribute_bytes)


# --- processes: CPU and memory from /proc -----------------------------------------------------


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    queue.extend(int(child) for child in handle.read().split())
            except OSError:
                continue
    return found


def rss_mb(pids: list[int]) -> float:
    total_kb = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total_kb += int(line.split()[1])
                        break
        except OSError:
            continue
    return total_kb / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process, 0 when it is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (everything but idle and iowait)."""
    with open("/proc/stat") as handle:
        fields = [int(value) for value in handle.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLOCK_TICKS


class RssSampler(threading.Thread):
    """Sums VmRSS over a process tree every `interval` seconds."""

    def __init__(self, root_pid: int, interval: float = 0.1):
        super().__init__(daemon=True, name="rss-sampler")
        self.root_pid = root_pid
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self.halt = threading.Event()

    def measure(self) -> float:
        value = rss_mb(descendants(self.root_pid))
        self.samples.append((time.perf_counter(), value))
        return value

    def run(self) -> None:
        while not self.halt.wait(self.interval):
            self.measure()

    def stop(self) -> None:
        self.halt.set()
        self.join()

    def between(self, start: float, end: float) -> list[tuple[float, float]]:
        return [(at, value) for at, value in self.samples if start <= at <= end]


# --- scratch database -------------------------------------------------------------------------


class ScratchDatabase:
    """The benchmark's own database: dropped and recreated unless --keep, dropped at the end
    unless --keep. Refuses to drop a database whose name does not contain "bench"."""

    def __init__(self, url: str, keep: bool):
        parts = urlsplit(url)
        if parts.scheme not in ("postgres", "postgresql"):
            raise BenchFailure(f"--database-url must be a postgres:// URL, not {url!r}")
        self.url = url
        self.name = unquote(parts.path.lstrip("/"))
        self.admin_url = urlunsplit(parts._replace(path="/postgres"))
        self.keep = keep
        if not self.name:
            raise BenchFailure("--database-url needs a database name")
        if not keep and "bench" not in self.name:
            raise BenchFailure(
                f"refusing to drop and recreate database {self.name!r}: its name does not "
                "contain 'bench'. Use a scratch name, or --keep to run in it as it is."
            )

    def _identifier(self) -> sql.Identifier:
        return sql.Identifier(self.name)

    def prepare(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [self.name]
            ).fetchone()
            if exists and not self.keep:
                conn.execute(
                    sql.SQL("DROP DATABASE {} WITH (FORCE)").format(self._identifier())
                )
                exists = None
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(self._identifier()))

    def drop(self) -> None:
        if self.keep:
            return
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(self._identifier())
            )


def app_environment(database_url: str, var_dir: str) -> dict[str, str]:
    """The environment of a production-like server (and of manage.py) for the benchmark."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="dashboard.settings",
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1",
        SECURE_SSL_REDIRECT="0",
        SESSION_COOKIE_SECURE="0",
        CSRF_COOKIE_SECURE="0",
        SECURE_HSTS_SECONDS="0",
        LOG_LEVEL="WARNING",
        FLIGHTDECK_VAR_DIR=var_dir,
        PYTHONUNBUFFERED="1",
    )
    return env


def manage(env: dict[str, str], *arguments: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise BenchFailure(
            f"manage.py {' '.join(arguments)} failed ({result.returncode}):\n"
            f"{result.stdout[-2000:]}{result.stderr[-4000:]}"
        )
    return result.stdout


def issue_token(env: dict[str, str]) -> str:
    output = manage(env, "create_agent_token", "--namespace", "bench", "--agent", "bench-agent")
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if not lines:
        raise BenchFailure("create_agent_token printed no token")
    return lines[-1]


# --- the server -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """gunicorn dashboard.wsgi in its own session, so only it and its workers get signalled."""

    def __init__(self, env: dict, *, workers: int, worker_class: str, threads: int, log_path):
        self.env = env
        self.workers = workers
        self.worker_class = worker_class
        self.threads = threads
        self.log_path = Path(log_path)
        self.port = 0
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.port = free_port()
        command = [
            sys.executable, "-m", "gunicorn", "dashboard.wsgi",
            "--bind", f"127.0.0.1:{self.port}",
            "--workers", str(self.workers),
            "--worker-class", self.worker_class,
            "--log-level", "warning",
            "--timeout", "120",
            "--keep-alive", "75",
            "--no-control-socket",
        ]
        if self.worker_class == "gthread":
            command += ["--threads", str(self.threads)]
        with open(self.log_path, "wb") as output:
            self.proc = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def worker_pids(self) -> list[int]:
        return [pid for pid in descendants(self.pid) if pid != self.pid]

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def get(self, path: str, token: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    def wait_ready(self, token: str, timeout: float = 90) -> None:
        """Until the API answers an authenticated request and every worker is up; then a few
        requests in parallel so each worker has imported the app and opened its DB connection."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise BenchFailure(f"gunicorn exited ({self.proc.returncode}):\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise BenchFailure(f"gunicorn did not answer in {timeout}s:\n{self.log_tail()}")
            try:
                status = self.get("/api/v1/runs?limit=1", token)
            except OSError:
                status = 0
            if status == 200 and len(self.worker_pids()) >= self.workers:
                break
            if status not in (0, 200):
                raise BenchFailure(f"readiness probe got HTTP {status}:\n{self.log_tail()}")
            time.sleep(0.2)
        warmers = [
            threading.Thread(target=self.get, args=("/api/v1/runs?limit=1", token), daemon=True)
            for _ in range(4 * self.workers)
        ]
        for thread in warmers:
            thread.start()
        for thread in warmers:
            thread.join()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


# --- sending ----------------------------------------------------------------------------------


@dataclass
class ClientResult:
    latencies: list[float] = field(default_factory=list)
    first: float | None = None
    last: float | None = None
    connects: int = 0
    errors: list[str] = field(default_factory=list)


def send_batches(
    port: int, token: str, bodies: list[tuple[bytes, int]], start: threading.Barrier,
    abort: threading.Event, result: ClientResult,
) -> None:
    """POST each body in turn over one HTTP/1.1 connection (http.client reconnects by itself
    when the server closes it, as gunicorn's sync worker does after every response)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Connection": "keep-alive",
    }
    try:
        start.wait()
        for number, (body, count) in enumerate(bodies):
            if abort.is_set():
                return
            if conn.sock is None:
                result.connects += 1
            began = time.perf_counter()
            if result.first is None:
                result.first = began
            conn.request("POST", INGEST_PATH, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            ended = time.perf_counter()
            result.last = ended
            result.latencies.append(ended - began)
            if response.status != 200:
                result.errors.append(
                    f"batch {number}: HTTP {response.status}: {data[:600].decode(errors='replace')}"
                )
                abort.set()
                return
            stored = orjson.loads(data).get("stored")
            if stored != count:
                result.errors.append(f"batch {number}: stored {stored} of {count} events")
                abort.set()
                return
    except Exception as exc:  # a dead server or a broken connection must stop the run
        result.errors.append(f"{type(exc).__name__}: {exc}")
        abort.set()
    finally:
        conn.close()


def join_all(threads: list[threading.Thread]) -> None:
    """Join without blocking Ctrl-C."""
    for thread in threads:
        while thread.is_alive():
            thread.join(0.2)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def bench_backend_pids(conn: psycopg.Connection, database: str) -> list[int]:
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        [database],
    ).fetchall()
    return [pid for (pid,) in rows]


@dataclass
class IngestFigures:
    wall: float
    latencies: list[float]
    connects: int
    rss_start: float
    rss_end: float
    rss_peak: float
    rss_quarters: list[float]
    worker_cpu: dict[int, float]
    postgres_cpu: float
    client_cpu: float
    machine_busy: float


def run_ingest(
    server: Server, token: str, workload: Workload, db: ScratchDatabase
) -> IngestFigures:
    sampler = RssSampler(server.pid)
    abort = threading.Event()
    barrier = threading.Barrier(len(workload.bodies) + 1)
    results = [ClientResult() for _ in workload.bodies]
    threads = [
        threading.Thread(
            target=send_batches, args=(server.port, token, bodies, barrier, abort, result),
            daemon=True, name=f"client-{index}",
        )
        for index, (bodies, result) in enumerate(zip(workload.bodies, results, strict=True))
    ]
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
        backends = bench_backend_pids(conn, db.name)
    workers = server.worker_pids()
    cpu_before = {pid: cpu_seconds(pid) for pid in [*workers, *backends]}
    client_before = time.process_time()
    busy_before = machine_busy_seconds()
    for thread in threads:
        thread.start()
    rss_start = sampler.measure()
    sampler.start()
    try:
        barrier.wait()
        join_all(threads)
    finally:
        abort.set()
        rss_end = sampler.measure()
        sampler.stop()
    client_cpu = time.process_time() - client_before
    machine_busy = machine_busy_seconds() - busy_before
    with psycopg.connect(db.url, autocommit=True) as conn:
        backends = sorted(set(backends) | set(bench_backend_pids(conn, db.name)))
    workers = sorted(set(workers) | set(server.worker_pids()))
    cpu_after = {pid: cpu_seconds(pid) for pid in [*workers, *backends]}
    errors = [error for result in results for error in result.errors]
    if errors:
        raise BenchFailure("ingest failed:\n  " + "\n  ".join(errors[:10]))
    first = min(result.first for result in results if result.first is not None)
    last = max(result.last for result in results if result.last is not None)
    window = sampler.between(first, last) or [(last, rss_end)]
    quarters = []
    for quarter in (0.25, 0.5, 0.75):
        moment = first + quarter * (last - first)
        quarters.append(min(window, key=lambda sample: abs(sample[0] - moment))[1])
    quarters.append(rss_end)
    return IngestFigures(
        wall=last - first,
        latencies=[latency for result in results for latency in result.latencies],
        connects=sum(result.connects for result in results),
        rss_start=rss_start,
        rss_end=rss_end,
        rss_peak=max([rss_start, rss_end, *(value for _, value in window)]),
        rss_quarters=quarters,
        worker_cpu={pid: cpu_after[pid] - cpu_before.get(pid, 0.0) for pid in workers},
        postgres_cpu=sum(cpu_after[pid] - cpu_before.get(pid, 0.0) for pid in backends),
        client_cpu=client_cpu,
        machine_busy=machine_busy,
    )


def verify_database(db: ScratchDatabase, workload: Workload) -> dict:
    """The stored events, runs and chains must be exactly what was sent."""
    pattern = f"bench-{workload.tag}-%"
    with psycopg.connect(db.url, autocommit=True) as conn:
        stored = conn.execute(
            "SELECT count(*) FROM history_event e JOIN history_run r ON r.id = e.run_id "
            "WHERE r.workflow_id LIKE %s",
            [pattern],
        ).fetchone()[0]
        runs, broken, with_secrets = conn.execute(
            "SELECT count(*), "
            "count(*) FILTER (WHERE contiguous_through <> last_event_id "
            "OR event_count <> last_event_id OR head_hash = ''), "
            "coalesce(sum(events_with_secrets), 0) "
            "FROM history_run WHERE workflow_id LIKE %s",
            [pattern],
        ).fetchone()
    if stored != workload.events:
        raise BenchFailure(f"the database holds {stored} events, expected {workload.events}")
    if runs != workload.runs or broken:
        raise BenchFailure(
            f"runs: {runs} stored (expected {workload.runs}), {broken} with an incomplete chain"
        )
    return {"events": stored, "runs": runs, "events_with_secrets": int(with_secrets)}


# --- the COPY baseline ------------------------------------------------------------------------


@dataclass
class CopyPass:
    wall: float
    cpu: float  # this process and its backends
    noise: float  # CPU seconds other processes used meanwhile


def read_back_rows(
    db: ScratchDatabase, workload: Workload, *, batch: int, connections: int
) -> list[list[bytes]]:
    """The rows the app stored, as COPY text, per connection (the connection that sent their
    runs) in the app's insertion order, cut into batches of `batch` rows."""
    columns = sql.SQL(", ").join(map(sql.Identifier, COPY_COLUMNS))
    chunks: list[list[bytes]] = []
    with psycopg.connect(db.url, autocommit=True) as conn:
        for index in range(connections):
            query = sql.SQL(
                "COPY (SELECT {columns} FROM history_event WHERE run_id IN "
                "(SELECT id FROM history_run WHERE workflow_id LIKE {pattern}) ORDER BY id) "
                "TO STDOUT"
            ).format(
                columns=columns, pattern=sql.Literal(workflow_prefix(workload.tag, index) + "%")
            )
            data = bytearray()
            with conn.cursor() as cursor, cursor.copy(query) as copy:
                for part in copy:
                    data += part
            rows = bytes(data).split(b"\n")
            if rows[-1] != b"":
                raise BenchFailure("COPY TO STDOUT output does not end with a newline")
            rows.pop()
            chunks.append([
                b"\n".join(rows[i : i + batch]) + b"\n" for i in range(0, len(rows), batch)
            ])
            del data, rows
    total = sum(chunk.count(b"\n") for per_connection in chunks for chunk in per_connection)
    if total != workload.events:
        raise BenchFailure(f"read {total} rows back for the baseline, expected {workload.events}")
    return chunks


def copy_pass(db: ScratchDatabase, chunks: list[list[bytes]], events: int) -> CopyPass:
    """One timed COPY of every chunk into an empty bench_copy (LIKE history_event INCLUDING ALL,
    plus its foreign key), one thread and connection per list of chunks, one transaction per
    chunk."""
    columns = sql.SQL(", ").join(map(sql.Identifier, COPY_COLUMNS))
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_copy")
        conn.execute("CREATE TABLE bench_copy (LIKE history_event INCLUDING ALL)")
        # LIKE copies no foreign key; history_event checks its run, so the baseline does too.
        conn.execute(
            "ALTER TABLE bench_copy ADD CONSTRAINT bench_copy_run_fk FOREIGN KEY (run_id) "
            "REFERENCES history_run (id) DEFERRABLE INITIALLY DEFERRED"
        )
        conn.execute("CHECKPOINT")

    statement = sql.SQL("COPY bench_copy ({columns}) FROM STDIN").format(columns=columns)
    barrier = threading.Barrier(len(chunks) + 1)
    marks: list[list[float]] = [[] for _ in chunks]
    errors: list[str] = []

    def writer(index: int, conn: psycopg.Connection) -> None:
        try:
            barrier.wait()
            marks[index].append(time.perf_counter())
            for chunk in chunks[index]:
                with conn.cursor() as cursor, cursor.copy(statement) as copy:
                    copy.write(chunk)
                conn.commit()
            marks[index].append(time.perf_counter())
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    connections = [psycopg.connect(db.url) for _ in chunks]
    backends = [conn.info.backend_pid for conn in connections]
    try:
        threads = [
            threading.Thread(target=writer, args=(index, conn), daemon=True)
            for index, conn in enumerate(connections)
        ]
        for thread in threads:
            thread.start()
        cpu_before = sum(cpu_seconds(pid) for pid in backends) + time.process_time()
        busy_before = machine_busy_seconds()
        barrier.wait()
        join_all(threads)
        busy = machine_busy_seconds() - busy_before
        ours = sum(cpu_seconds(pid) for pid in backends) + time.process_time() - cpu_before
    finally:
        for conn in connections:
            conn.close()
    if errors:
        raise BenchFailure("baseline COPY failed:\n  " + "\n  ".join(errors))
    with psycopg.connect(db.url, autocommit=True) as conn:
        copied = conn.execute("SELECT count(*) FROM bench_copy").fetchone()[0]
    if copied != events:
        raise BenchFailure(f"bench_copy holds {copied} rows, expected {events}")
    wall = max(mark[1] for mark in marks) - min(mark[0] for mark in marks)
    return CopyPass(wall, ours, max(0.0, busy - ours))


def copy_baseline(
    db: ScratchDatabase, workload: Workload, *, batch: int, connections: int, repeats: int,
    keep: bool,
) -> list[CopyPass]:
    """`repeats` timed passes of COPY bench_copy FROM STDIN with the rows the app stored,
    batched and spread over connections like the ingest run."""
    chunks = read_back_rows(db, workload, batch=batch, connections=connections)
    passes = [copy_pass(db, chunks, workload.events) for _ in range(repeats)]
    if not keep:
        with psycopg.connect(db.url, autocommit=True) as conn:
            conn.execute("DROP TABLE bench_copy")
    return passes


# --- in-process profile -----------------------------------------------------------------------


def run_profile(args, db: ScratchDatabase, env: dict[str, str], token: str, tag: str) -> dict:
    """ingest_batch in this process, without HTTP: once plainly timed, once under cProfile."""
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings

    from access.models import Token
    from history import wire
    from history.ingest import ingest_batch

    # The view decodes bodies with history.wire.decode_json where it exists (plain orjson
    # otherwise); time the same function.
    decode = getattr(wire, "decode_json", orjson.loads)

    token_row = Token.authenticate(token)
    if token_row is None:
        raise BenchFailure("the bench token does not authenticate in-process")
    limit = settings.INGEST_MAX_ATTRIBUTES_BYTES

    def workload(suffix: str, seed: int) -> Workload:
        return build_workload(
            events=args.profile_events, batch=args.batch, connections=1,
            run_length=args.run_length, runs_in_flight=args.runs_in_flight,
            tag=tag + suffix, seed=seed,
        )

    plain, profiled = workload("t", args.seed + 1), workload("p", args.seed + 2)
    parse_started = time.perf_counter()
    plain_items = [decode(body)["events"] for body, _ in plain.bodies[0]]
    parse_seconds = time.perf_counter() - parse_started
    profiled_items = [decode(body)["events"] for body, _ in profiled.bodies[0]]

    def ingest_all(batches: list[list]) -> None:
        for items in batches:
            outcome = ingest_batch(token_row, items, max_attributes_bytes=limit)
            if not outcome.all_accepted or outcome.count("stored") != len(items):
                raise BenchFailure("an in-process batch was not stored in full")

    wall_started, cpu_started = time.perf_counter(), time.process_time()
    ingest_all(plain_items)
    plain_wall = time.perf_counter() - wall_started
    plain_cpu = time.process_time() - cpu_started

    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    ingest_all(profiled_items)
    profiler.disable()
    profiled_wall = time.perf_counter() - started

    for load in (plain, profiled):
        verify_database(db, load)

    dump = Path(tempfile.gettempdir()) / "flightdeck-ingest.prof"
    profiler.dump_stats(dump)
    for order in ("cumulative", "tottime"):
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).strip_dirs().sort_stats(order).print_stats(25)
        print(f"\n===== top 25 by {order} ({profiled.events} events, "
              f"{profiled.batches} batches) =====", file=sys.stderr)
        print(text.getvalue(), file=sys.stderr)
    batches = plain.batches
    log(f"in-process ingest_batch, {plain.events} events in {batches} batches of {args.batch}:")
    log(f"  plain:     {plain.events / plain_wall:10.0f} events/s  "
        f"({plain_wall / batches * 1000:.1f} ms/batch wall, "
        f"{plain_cpu / batches * 1000:.1f} ms/batch CPU of this process)")
    log(f"  cProfile:  {profiled.events / profiled_wall:10.0f} events/s (profiler overhead "
        "inflates Python-heavy parts)")
    log(f"  {decode.__module__}.{decode.__name__} of the bodies: "
        f"{parse_seconds / batches * 1000:.2f} ms/batch "
        f"({parse_seconds / plain_wall:.1%} of the plain ingest time)")
    log(f"  profile written to {dump} (python -m pstats {dump})")
    return {
        "mode": "profile",
        "events": plain.events,
        "batch": args.batch,
        "inprocess_events_per_s": round(plain.events / plain_wall),
        "inprocess_cpu_ms_per_batch": round(plain_cpu / batches * 1000, 1),
        "profiled_events_per_s": round(profiled.events / profiled_wall),
        "json_parse_ms_per_batch": round(parse_seconds / batches * 1000, 2),
    }


# --- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events to ingest (N)")
    parser.add_argument("--batch", type=int, default=1000, help="events per request")
    parser.add_argument("--connections", type=int, default=2, help="client connections")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--worker-class", choices=("sync", "gthread"), default="sync")
    parser.add_argument("--threads", type=int, default=2, help="threads per gthread worker")
    parser.add_argument("--run-length", type=int, default=500, help="events per run")
    parser.add_argument("--runs-in-flight", type=int, default=4,
                        help="runs each connection interleaves in its batches")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL,
                        help=f"scratch database (default {DEFAULT_DATABASE_URL})")
    parser.add_argument("--keep", action="store_true",
                        help="do not drop/recreate the database (nor drop it at the end)")
    parser.add_argument("--copy-repeats", type=int, default=3,
                        help="timed passes of the COPY baseline; the median is reported")
    parser.add_argument("--seed", type=int, default=20261101)
    parser.add_argument("--profile", action="store_true",
                        help="profile ingest_batch in-process instead of the HTTP benchmark")
    parser.add_argument("--profile-events", type=int, default=20_000)
    args = parser.parse_args(argv)
    for name in ("events", "batch", "connections", "workers", "threads", "run_length",
                 "runs_in_flight", "profile_events", "copy_repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be 1 or more")
    return args


def close_django_connections() -> None:
    """After --profile: this process holds a connection to the database about to be dropped."""
    if "django.db" in sys.modules:
        from django.apps import apps

        if apps.ready:
            from django.db import connections

            connections.close_all()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_http(args, db: ScratchDatabase, env: dict[str, str], token: str, tag: str) -> dict:
    started = time.perf_counter()
    workload = build_workload(
        events=args.events, batch=args.batch, connections=args.connections,
        run_length=args.run_length, runs_in_flight=args.runs_in_flight, tag=tag, seed=args.seed,
    )
    sizes = workload.attribute_bytes
    log(f"prepared {workload.events} events in {workload.runs} runs, {workload.batches} "
        f"batches, {workload.body_bytes / 2**20:.1f} MiB of JSON in "
        f"{time.perf_counter() - started:.1f}s; attributes {statistics.mean(sizes):.0f} B mean "
        f"({percentile(sizes, 5)}..{percentile(sizes, 95)} B p5..p95); "
        f"{workload.secret_events} events carry a fake credential")
    server = Server(
        env, workers=args.workers, worker_class=args.worker_class, threads=args.threads,
        log_path=Path(env["FLIGHTDECK_VAR_DIR"]) / "gunicorn.log",
    )
    try:
        server.start()
        server.wait_ready(token)
        log(f"gunicorn {args.worker_class} x{args.workers} on 127.0.0.1:{server.port} "
            f"(pid {server.pid}, workers {server.worker_pids()[:8]})")
        figures = run_ingest(server, token, workload, db)
    finally:
        server.stop()
    stored = verify_database(db, workload)
    workload.bodies = []  # free the request bodies before the baseline reads rows back
    passes = copy_baseline(
        db, workload, batch=args.batch, connections=args.connections,
        repeats=args.copy_repeats, keep=args.keep,
    )
    chosen = sorted(passes, key=lambda one: one.wall)[(len(passes) - 1) // 2]  # the median
    copy_wall = chosen.wall

    events_per_s = workload.events / figures.wall
    copy_rows_per_s = workload.events / copy_wall
    batches = len(figures.latencies)
    worker_cpu = sum(figures.worker_cpu.values())
    ours = worker_cpu + figures.postgres_cpu + figures.client_cpu
    log("")
    log(f"ingest: {workload.events} events in {figures.wall:.2f}s = {events_per_s:,.0f} events/s "
        f"over {args.connections} connections, {batches} batches of {args.batch}")
    log(f"  batch latency p50 {percentile(figures.latencies, 50) * 1000:.0f} ms, "
        f"p95 {percentile(figures.latencies, 95) * 1000:.0f} ms, "
        f"max {max(figures.latencies) * 1000:.0f} ms; {figures.connects} TCP connects")
    log(f"  CPU: gunicorn workers {worker_cpu:.1f}s "
        f"({', '.join(f'{cpu:.1f}' for cpu in figures.worker_cpu.values())}; "
        f"{worker_cpu / batches * 1000:.0f} ms/batch), postgres backends "
        f"{figures.postgres_cpu:.1f}s, this client {figures.client_cpu:.1f}s, of "
        f"{figures.wall * (os.cpu_count() or 1):.1f}s available on {os.cpu_count()} cores; "
        f"machine busy {figures.machine_busy:.1f}s, of which "
        f"{max(0.0, figures.machine_busy - ours):.1f}s outside these processes (noise)")
    log(f"  server RSS (master + workers): start {figures.rss_start:.0f} MB, at 25/50/75/100% "
        f"{' / '.join(f'{value:.0f}' for value in figures.rss_quarters)} MB, "
        f"peak {figures.rss_peak:.0f} MB")
    log(f"  stored {stored['events']} events in {stored['runs']} runs, chains complete; "
        f"{stored['events_with_secrets']} events flagged by the secret scanner "
        f"(sent {workload.secret_events})")
    if stored["events_with_secrets"] != workload.secret_events:
        log("  WARNING: the scanner did not flag exactly the events carrying a credential")
    noise = max(0.0, figures.machine_busy - ours)
    capacity = os.cpu_count() or 1
    if noise > 0.25 * figures.wall * capacity:
        log(f"  WARNING: other processes kept {noise / figures.wall / capacity:.0%} of the "
            "machine busy during the ingest: its figures are not trustworthy")
    log(f"baseline COPY: {workload.events} rows in {copy_wall:.2f}s = {copy_rows_per_s:,.0f} "
        f"rows/s (same rows, batches and connections; median of {len(passes)} passes: "
        f"{', '.join(f'{workload.events / one.wall:,.0f}' for one in passes)} rows/s)")
    for number, one in enumerate(passes, 1):
        if one.noise > 0.25 * one.wall * capacity:
            log(f"  WARNING: other processes kept {one.noise / one.wall / capacity:.0%} of the "
                f"machine busy during COPY pass {number}")
    log(f"ratio to COPY: {events_per_s / copy_rows_per_s:.3f} (target >= 0.20)")
    return {
        "events": workload.events,
        "events_per_s": round(events_per_s, 1),
        "copy_rows_per_s": round(copy_rows_per_s, 1),
        "ratio_to_copy": round(events_per_s / copy_rows_per_s, 4),
        "p50_batch_ms": round(percentile(figures.latencies, 50) * 1000, 1),
        "p95_batch_ms": round(percentile(figures.latencies, 95) * 1000, 1),
        "server_peak_rss_mb": round(figures.rss_peak, 1),
        "server_rss_start_mb": round(figures.rss_start, 1),
        "server_rss_end_mb": round(figures.rss_end, 1),
        "workers": args.workers,
        "batch": args.batch,
        "connections": args.connections,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGINT, _interrupt)  # also when started with SIGINT ignored (&)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    tag = secrets.token_hex(4)
    try:
        db = ScratchDatabase(args.database_url, args.keep)
    except BenchFailure as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="flightdeck-bench-") as var_dir:
        env = app_environment(args.database_url, var_dir)
        try:
            db.prepare()
            log(f"database {db.name}: migrating ...")
            manage(env, "migrate", "--noinput")
            token = issue_token(env)
            if args.profile:
                summary = run_profile(args, db, env, token, tag)
            else:
                summary = run_http(args, db, env, token, tag)
        except BenchFailure as exc:
            print(f"bench: FAILED: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("bench: interrupted", file=sys.stderr)
            return 130
        finally:
            close_django_connections()
            db.drop()
    print(orjson.dumps(summary).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
