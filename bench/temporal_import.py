"""Import a generated 51,200-event Temporal history, against only parsing its JSON.

    .venv/bin/python bench/temporal_import.py                 # PostgreSQL scratch database
    .venv/bin/python bench/temporal_import.py --events 5120   # a quick check

51,200 events is the largest history a Temporal server keeps (it terminates a workflow past
it). The history is a support agent's loop, written as `temporal workflow show -o json`
writes it: per cycle a workflow task (scheduled, started, completed) and an activity
(scheduled with an input payload, started, completed with a result payload), alternating model
and tool calls, with a failed-then-retried attempt now and then.

Timed, each `--repeats` times (median reported): `parse`, decoding the file with the
importer's own JSON decoder (`history.wire.decode_json`, orjson), as any code would, and
again with Python's cyclic garbage collector paused, as the import runs (a second baseline:
most of a plain parse of 29 MB is the collector walking the objects it has just made);
`import`, the whole import
of the file into a fresh namespace (`temporal.importer`: read and normalise, map, validate,
check for conflicts, store through `history.ingest` with secret scanning, hashing and COPY on
PostgreSQL). The last line is one JSON object; `ratio` is import / parse (target <= 5).

It works in its own scratch database (dropped and recreated; the name must contain `bench`).
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/flightdeck_bench_temporal"
JSON_PLAIN = base64.b64encode(b"json/plain").decode()


def payload(value) -> dict:
    data = base64.b64encode(json.dumps(value, separators=(",", ":")).encode()).decode()
    return {"payloads": [{"metadata": {"encoding": JSON_PLAIN}, "data": data}]}


def generate(total: int) -> bytes:
    """A history of `total` events, ascending, as the CLI writes it (indented JSON)."""
    start = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    events: list[dict] = []

    def add(kind: str, attributes: dict, seconds: float = 0.01) -> int:
        moment = start + timedelta(seconds=len(events) * seconds)
        event_id = len(events) + 1
        key = "".join(w.capitalize() for w in kind.lower().split("_"))
        events.append({
            "eventId": str(event_id),
            "eventTime": moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z",
            "eventType": f"EVENT_TYPE_{kind}",
            "taskId": str(1048576 + event_id),
            f"{key[0].lower()}{key[1:]}EventAttributes": attributes,
        })
        return event_id

    queue = {"name": "support", "kind": "TASK_QUEUE_KIND_NORMAL"}
    add("WORKFLOW_EXECUTION_STARTED", {
        "workflowType": {"name": "SupportAgent"}, "taskQueue": queue,
        "input": payload({"ticket_id": "T-1", "text": "Please refund order 1234"}),
        "workflowTaskTimeout": "10s", "originalExecutionRunId": "0193-bench-run",
        "identity": "4242@worker-1", "firstExecutionRunId": "0193-bench-run", "attempt": 1,
        "firstWorkflowTaskBackoff": "0s", "workflowId": "bench-ticket", "priority": {},
    })
    cycle = 0
    while len(events) < total - 1:
        cycle += 1
        scheduled = add("WORKFLOW_TASK_SCHEDULED", {"taskQueue": queue,
                                                    "startToCloseTimeout": "10s", "attempt": 1})
        started = add("WORKFLOW_TASK_STARTED", {
            "scheduledEventId": str(scheduled), "identity": "4242@worker-1",
            "requestId": f"req-{cycle:08d}", "historySizeBytes": str(cycle * 900)})
        decided = add("WORKFLOW_TASK_COMPLETED", {
            "scheduledEventId": str(scheduled), "startedEventId": str(started),
            "identity": "4242@worker-1", "sdkMetadata": {"sdkName": "temporal-python",
                                                         "sdkVersion": "1.35.0"},
            "meteringMetadata": {}})
        model = cycle % 2 == 0
        activity_type = "llm.plan" if model else "tool.lookup_order"
        arguments = ({"messages": [{"role": "user", "content": f"step {cycle}: what next?"}],
                      "model": "fake-support-model-1"} if model
                     else {"order_id": str(1000 + cycle % 97), "fields": ["status", "total"]})
        activity = add("ACTIVITY_TASK_SCHEDULED", {
            "activityId": str(cycle), "activityType": {"name": activity_type},
            "taskQueue": queue, "header": {}, "input": payload(arguments),
            "scheduleToCloseTimeout": "0s", "scheduleToStartTimeout": "0s",
            "startToCloseTimeout": "30s", "heartbeatTimeout": "0s",
            "workflowTaskCompletedEventId": str(decided),
            "retryPolicy": {"initialInterval": "1s", "backoffCoefficient": 2,
                            "maximumInterval": "100s"}, "useWorkflowBuildId": True,
            "priority": {}})
        retried = cycle % 25 == 0
        attempt = {"scheduledEventId": str(activity), "identity": "4242@worker-1",
                   "requestId": f"act-{cycle:08d}", "attempt": 2 if retried else 1}
        if retried:
            attempt["lastFailure"] = {"message": "upstream timeout", "source": "PythonSDK",
                                      "applicationFailureInfo": {"type": "TimeoutError"}}
        act_started = add("ACTIVITY_TASK_STARTED", attempt)
        result = ({"text": f"Plan for step {cycle}: look up the order, then answer.",
                   "tokens": 42 + cycle % 17} if model
                  else {"status": "delivered", "total_cents": 1999 + cycle % 500})
        add("ACTIVITY_TASK_COMPLETED", {
            "result": payload(result), "scheduledEventId": str(activity),
            "startedEventId": str(act_started), "identity": "4242@worker-1"})
    events = events[: total - 1]
    add("WORKFLOW_EXECUTION_COMPLETED", {"result": payload({"reply": "Done."}),
                                         "workflowTaskCompletedEventId": str(len(events) - 1)})
    return json.dumps({"events": events}, indent=2).encode()


def recreate_database(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    if "bench" not in name:
        sys.exit(f"refusing to drop {name!r}: a scratch database's name must contain 'bench'")
    import psycopg

    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=51_200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--database-url", default=DEFAULT_DB)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()

    if args.database_url.startswith("postgres"):
        recreate_database(args.database_url)
    scratch = tempfile.mkdtemp(prefix="flightdeck-temporal-bench-")
    os.environ.update(DEBUG="0", SECRET_KEY="bench-" + os.urandom(16).hex(),
                      DATABASE_URL=args.database_url, FLIGHTDECK_VAR_DIR=scratch,
                      LOG_LEVEL="WARNING", DJANGO_SETTINGS_MODULE="dashboard.settings")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, check=True)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from access.models import Namespace
    from history.models import Event
    from history.wire import decode_json
    from temporal import importer, preparation

    content = generate(args.events)
    print(f"history: {args.events} events, {len(content) / 1e6:.1f} MB", file=sys.stderr)

    parse_times, bare_parse_times, import_times, prepare_times = [], [], [], []
    for attempt in range(args.repeats):
        began = time.perf_counter()
        decode_json(content)
        parse_times.append(time.perf_counter() - began)
        # The same without Python's cyclic garbage collector, which the import pauses.
        gc.disable()
        began = time.perf_counter()
        decode_json(content)
        bare_parse_times.append(time.perf_counter() - began)
        gc.enable()

        namespace = Namespace.objects.create(slug=f"bench-{attempt}")
        began = time.perf_counter()
        imp = importer.start_import(namespace=namespace, user=None, content=content,
                                    filename="bench.json", inline=True)
        import_times.append(time.perf_counter() - began)
        if imp.state != "done" or imp.stored != args.events:
            sys.exit(f"the import failed: {imp.state} {imp.error} ({imp.stored} stored)")
        stored = Event.objects.filter(run__namespace=namespace).count()
        if stored != args.events:
            sys.exit(f"{stored} events stored, expected {args.events}")

        began = time.perf_counter()
        preparation.prepare(content)  # read, normalise, map, validate: no database
        prepare_times.append(time.perf_counter() - began)
        print(f"pass {attempt + 1}: parse {parse_times[-1]:.3f} s (without the cyclic GC "
              f"{bare_parse_times[-1]:.3f} s), import "
              f"{import_times[-1]:.3f} s (read/map/validate apart {prepare_times[-1]:.3f} s)",
              file=sys.stderr)

    parse_s = statistics.median(parse_times)
    import_s = statistics.median(import_times)
    result = {
        "events": args.events,
        "bytes": len(content),
        "database": urlsplit(args.database_url).scheme,
        "parse_s": round(parse_s, 4),
        "parse_without_gc_s": round(statistics.median(bare_parse_times), 4),
        "import_s": round(import_s, 4),
        "prepare_s": round(statistics.median(prepare_times), 4),
        "events_per_s": round(args.events / import_s),
        "ratio": round(import_s / parse_s, 2),
        "ratio_to_parse_without_gc": round(import_s / statistics.median(bare_parse_times), 2),
        "target_ratio": 5,
    }
    if args.database_url.startswith("postgres") and not args.keep:
        from django.db import connections

        connections.close_all()
        recreate_database(args.database_url)  # leaves an empty database behind, not our data
    print(json.dumps(result))


if __name__ == "__main__":
    main()
