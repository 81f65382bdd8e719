#!/usr/bin/env python3
"""Evidence export benchmark: export and verify one run of 51,200 events (Temporal's largest
history), against reading the same rows and writing them as plain JSON lines.

    .venv/bin/python bench/export.py [--events 51200] [--repeats 3] [--attribute-bytes 0]
                                     [--database-url URL] [--keep]

What one run does:

1. Creates a scratch PostgreSQL database (default `flightdeck_bench_export`, dropped and
   recreated unless --keep; a name without "bench" is refused), migrates it, and in a child
   process seeds one run of --events events through `history.seeding.bulk_load` (the stored
   form and hashes of ingest), one event in 256 carrying a fake credential so that redaction
   runs, plus a signed digest that records the run, and an investigator to export it.
2. Each repeat, in fresh child processes (so that each peak RSS is that pass's own):
   - baseline: read the run's events (the columns a bundle needs, the same server-side cursor
     and chunk size) and write them as orjson lines to a file: the floor for any export;
   - export: the real path (evidence.exports.request_export, claim, build) into a signed,
     redacted zip; its wall time and the process's peak RSS (ru_maxrss), with the RSS after
     Django start-up for reference;
   - verify: evidence/verify_bundle.py's verify_bundle() on the zip, trusting the key's
     fingerprint, in a process without Django; its wall time and peak RSS.
3. Prints each pass, then as its last line one JSON object: medians of the repeats, the ratio
   of export to baseline, and whether the targets (export <= 5 s, peak <= 200 MB) are met.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/flightdeck_bench_export"
TARGET_EXPORT_SECONDS = 5.0
TARGET_PEAK_MB = 200.0
SECRET_EVERY = 256


def log(message: str = "") -> None:
    print(message, flush=True)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --- the parent ---------------------------------------------------------------------------------


class ScratchDatabase:
    def __init__(self, url: str, keep: bool):
        parts = urlsplit(url)
        if parts.scheme not in ("postgres", "postgresql"):
            sys.exit(f"--database-url must be a postgres:// URL, not {url!r}")
        self.name = unquote(parts.path.lstrip("/"))
        self.admin_url = urlunsplit(parts._replace(path="/postgres"))
        self.keep = keep
        if not keep and "bench" not in self.name:
            sys.exit(f"refusing to drop database {self.name!r}: its name lacks 'bench'")

    def _run(self, statement: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL(statement).format(sql.Identifier(self.name)))

    def prepare(self) -> None:
        if not self.keep:
            self._run("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            self._run("CREATE DATABASE {}")

    def drop(self) -> None:
        if not self.keep:
            self._run("DROP DATABASE IF EXISTS {} WITH (FORCE)")


def child(env: dict, *arguments: str) -> dict:
    """Run this script in a child mode; its last stdout line is a JSON object."""
    result = subprocess.run(
        [sys.executable, __file__, *arguments], cwd=ROOT, env=env, capture_output=True,
        text=True, check=False,
    )
    if result.returncode != 0:
        sys.exit(f"child {' '.join(arguments)} failed:\n{result.stdout[-3000:]}"
                 f"{result.stderr[-5000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=51_200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--attribute-bytes", type=int, default=0,
                        help="pad each event's attributes with about this much varied text "
                             "(long_history's own attributes are tiny; ingest bench's average "
                             "is about 400)")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--keep", action="store_true", help="reuse the database as it is")
    parser.add_argument("--child", choices=["seed", "read", "export", "verify"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--bundle", help=argparse.SUPPRESS)
    parser.add_argument("--fingerprint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        CHILDREN[args.child](args)
        return

    db = ScratchDatabase(args.database_url, args.keep)
    scratch = Path(tempfile.mkdtemp(prefix="flightdeck-bench-export-"))
    env = dict(os.environ)
    env.update(
        DATABASE_URL=args.database_url, DJANGO_SETTINGS_MODULE="dashboard.settings", DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50), ALLOWED_HOSTS="127.0.0.1", LOG_LEVEL="WARNING",
        FLIGHTDECK_VAR_DIR=str(scratch / "var"), EVIDENCE_EXPORT_DIR=str(scratch / "exports"),
        EVIDENCE_DIGEST_DIR=str(scratch / "digests"),
        EVIDENCE_SIGNING_KEY=base64.b64encode(os.urandom(32)).decode(), PYTHONUNBUFFERED="1",
        # Nothing here may reach a real broker: exports are built in the child itself.
        CELERY_BROKER_URL="memory://",
    )
    db.prepare()
    try:
        migrated = subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT,
                                  env=env, capture_output=True, text=True, check=False)
        if migrated.returncode != 0:
            sys.exit(f"migrate failed:\n{migrated.stderr[-3000:]}")
        started = time.perf_counter()
        seeded = child(env, "--child", "seed", "--events", str(args.events),
                       "--attribute-bytes", str(args.attribute_bytes))
        log(f"seeded one run of {seeded['events']} events ({seeded['secrets']} with a fake "
            f"credential) in {time.perf_counter() - started:.1f} s; digest "
            f"{seeded['digest']} records it")
        passes = []
        for number in range(1, args.repeats + 1):
            read = child(env, "--child", "read")
            exported = child(env, "--child", "export")
            verified = child(env, "--child", "verify", "--bundle", exported["bundle"],
                             "--fingerprint", seeded["fingerprint"])
            if not verified["ok"]:
                sys.exit(f"the bundle did not verify: {verified['problems'][:5]}")
            passes.append({**exported, "baseline_seconds": read["seconds"],
                           "baseline_peak_mb": read["peak_mb"],
                           "verify_seconds": verified["seconds"],
                           "verify_peak_mb": verified["peak_mb"]})
            log(f"pass {number}: export {exported['seconds']:.2f} s (peak {exported['peak_mb']:.0f}"
                f" MB, {exported['rss_after_setup_mb']:.0f} MB after start-up), baseline read "
                f"{read['seconds']:.2f} s (peak {read['peak_mb']:.0f} MB), verify "
                f"{verified['seconds']:.2f} s (peak {verified['peak_mb']:.0f} MB), bundle "
                f"{exported['bundle_mb']:.1f} MB")
            Path(exported["bundle"]).unlink()
    finally:
        db.drop()

    def median(name: str) -> float:
        return round(statistics.median(p[name] for p in passes), 3)

    figures = {
        "events": seeded["events"],
        "attribute_bytes": args.attribute_bytes,
        "repeats": len(passes),
        "export_seconds": median("seconds"),
        "verify_seconds": median("verify_seconds"),
        "peak_memory_mb": median("peak_mb"),
        "rss_after_setup_mb": median("rss_after_setup_mb"),
        "baseline_read_seconds": median("baseline_seconds"),
        "baseline_peak_mb": median("baseline_peak_mb"),
        "verify_peak_mb": median("verify_peak_mb"),
        "bundle_mb": median("bundle_mb"),
    }
    figures["export_to_baseline_ratio"] = round(
        figures["export_seconds"] / figures["baseline_read_seconds"], 2)
    figures["targets"] = {"export_seconds": TARGET_EXPORT_SECONDS,
                          "peak_memory_mb": TARGET_PEAK_MB}
    figures["targets_met"] = (figures["export_seconds"] <= TARGET_EXPORT_SECONDS
                              and figures["peak_memory_mb"] <= TARGET_PEAK_MB)
    print(json.dumps(figures), flush=True)


# --- child processes ---------------------------------------------------------------------------


def _django():
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def seed(args) -> None:
    _django()
    import random

    from django.contrib.auth import get_user_model

    from access.models import Agent, Membership, Namespace, Token
    from evidence import digests, keys
    from history.seeding import bulk_load, long_history, start_time

    namespace = Namespace.objects.create(slug="bench")
    agent = Agent.objects.create(namespace=namespace, name="bench-agent")
    token, _ = Token.issue(agent=agent)
    user = get_user_model().objects.create_user("bench-investigator")
    Membership.objects.create(user=user, namespace=namespace, role="investigator")
    events = long_history("bench-long", "run-1", args.events, start_time(1), random.Random(7))
    credential = "AKIA" + "BENCHEXAMPLE0000"
    if args.attribute_bytes:
        rng = random.Random(11)
        words = ["order", "customer", "refund", "invoice", "search", "result", "summary",
                 "policy", "ticket", "account", "shipping", "status", "update", "reply"]
        for item in events:
            text = []
            while sum(len(w) + 1 for w in text) < args.attribute_bytes:
                text.append(f"{rng.choice(words)}-{rng.randint(0, 99999)}")
            item.setdefault("attributes", {})["text"] = " ".join(text)
    marked = 0
    for item in events[1::SECRET_EVERY]:
        item.setdefault("attributes", {})["note"] = f"called the API with {credential}"
        marked += 1
    stored = bulk_load(token, iter([events]))
    digest = digests.sign_digest()
    print(json.dumps({"events": stored, "secrets": marked, "digest": digest.seq,
                      "fingerprint": keys.fingerprint()}))


def read(args) -> None:
    """The floor: the same rows, the same cursor, written as plain JSON lines."""
    _django()
    import orjson

    from evidence.bundle import EVENT_CHUNK, EVENT_COLUMNS
    from history.models import Event, Run

    run = Run.objects.get()
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        for row in Event.objects.filter(run=run).order_by("event_id").values_list(
            *EVENT_COLUMNS
        ).iterator(chunk_size=EVENT_CHUNK):
            out.write(orjson.dumps(row) + b"\n")
    print(json.dumps({"seconds": time.perf_counter() - started, "peak_mb": peak_mb()}))


def export(args) -> None:
    _django()
    from django.contrib.auth import get_user_model
    from django.http import QueryDict

    from evidence import exports, tasks
    from evidence.scope import ExportScope
    from history.models import Run

    # The page enqueues the build after commit; here this process builds it, as a worker would.
    tasks.build_export.delay_on_commit = lambda *args, **kwargs: None
    user = get_user_model().objects.get(username="bench-investigator")
    scope = ExportScope.from_query(QueryDict(f"run={Run.objects.get().uuid}"))
    rss_after_setup = peak_mb()
    started = time.perf_counter()
    request = exports.request_export(user, scope, raw=False, reason="")
    export_row = exports.claim(request.id)
    exports.build(export_row)
    seconds = time.perf_counter() - started
    export_row.refresh_from_db()
    if export_row.state != "ready":
        sys.exit(f"export failed: {export_row.error}")
    path = exports.file_path(export_row)
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb(),
                      "rss_after_setup_mb": rss_after_setup, "bundle": str(path),
                      "bundle_mb": path.stat().st_size / 2**20}))


def verify(args) -> None:
    sys.path.insert(0, str(ROOT / "evidence"))
    from verify_bundle import TrustedKeys, verify_bundle

    if "django" in sys.modules:
        sys.exit("the verifier child must run without Django")
    trusted = TrustedKeys()
    trusted.add_fingerprint(args.fingerprint)
    started = time.perf_counter()
    result = verify_bundle(args.bundle, trusted)
    print(json.dumps({"seconds": time.perf_counter() - started, "peak_mb": peak_mb(),
                      "ok": result.ok, "problems": result.problems[:20],
                      "summary": result.summary()}))


CHILDREN = {"seed": seed, "read": read, "export": export, "verify": verify}


if __name__ == "__main__":
    main()
