#!/usr/bin/env python3
"""Set up and run Flightdeck on a fresh machine: Python 3.11+ and git are all it needs.

    python3 dev.py demo     # install into .venv, migrate, create a first user, seed, serve
    python3 dev.py demo --smoke  # the same on a scratch database, checked end to end, then exit
    python3 dev.py test     # install into .venv and run the test suite (extra args go to pytest)

Uses SQLite and an embedded Celery broker unless DATABASE_URL / REDIS_URL are set.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".flightdeck-installed"


def ensure_environment(*, with_tests: bool) -> None:
    """Create .venv and install the project (with its test tools for `test`), again only when
    pyproject.toml changed since the last install or the tools are wanted now."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this script runs before the venv exists
        sys.exit("Flightdeck needs Python 3.11 or newer.")
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    installed = STAMP.read_text().split() if STAMP.exists() and PYTHON.exists() else []
    if installed[:1] == [digest] and (not with_tests or "test" in installed):
        return
    if not PYTHON.exists() or not (VENV / "pyvenv.cfg").exists():
        print("Creating .venv ...", flush=True)
        try:
            venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
        except (OSError, subprocess.CalledProcessError) as exc:
            shutil.rmtree(VENV, ignore_errors=True)  # a half-made venv would fool the next run
            sys.exit(
                f"Could not create .venv ({exc}). On Debian or Ubuntu install python3-venv "
                "(apt-get install python3-venv), then run this again."
            )
    target = f"{ROOT}[test]" if with_tests or "test" in installed else str(ROOT)
    print("Installing Flightdeck and its dependencies into .venv ...", flush=True)
    run([PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    run([PYTHON, "-m", "pip", "install", "--quiet", "-e", target])
    STAMP.write_text(f"{digest} {'test' if target.endswith('[test]') else ''}".strip())


def run(command: list, **kwargs) -> None:
    result = subprocess.run([str(part) for part in command], cwd=ROOT, check=False, **kwargs)
    if result.returncode != 0:
        sys.exit(result.returncode)


def manage(*args: str, env: dict) -> None:
    run([PYTHON, "manage.py", *args], env=env)


def serve_commands(address: str, env: dict) -> list[subprocess.Popen]:
    """The processes of a running Flightdeck: the ASGI server (uvicorn; agents' long-polls wait
    without a thread each) and a Celery worker with its beat scheduler (delivery, the sweeper,
    following Temporal connections).
    """
    host, _, port = address.rpartition(":")
    server = subprocess.Popen(
        [str(PYTHON), "-m", "uvicorn", "dashboard.asgi:application", "--host", host or "127.0.0.1",
         "--port", port, "--no-access-log"], cwd=ROOT, env=env,
    )
    worker = subprocess.Popen(
        # -c 3: a Temporal follow session holds a process for its length (docs/temporal.md).
        [str(BIN / "celery"), "-A", "dashboard", "worker", "-B", "-Q", "commands,slow,temporal",
         "-c", "3", "-l", "warning", "--schedule", str(var_dir(env) / "celerybeat-schedule")],
        cwd=ROOT, env=env,
    )
    return [server, worker]


def var_dir(env: dict) -> Path:
    folder = Path(env.get("FLIGHTDECK_VAR_DIR") or ROOT / "var")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def demo(args: list[str]) -> None:
    if args[:1] == ["--smoke"]:
        smoke()
        return
    env = {**os.environ, "DEBUG": os.environ.get("DEBUG", "1")}
    manage("migrate", "--no-input", env=env)
    manage("bootstrap_demo", env=env)
    manage("seed_history", "--if-empty", "--runs", "40", env=env)
    address = args[0] if args else "127.0.0.1:8000"
    print(f"\nFlightdeck is at http://{address}/  (Ctrl-C stops it)\n", flush=True)
    processes = serve_commands(address, env)
    try:
        while all(process.poll() is None for process in processes):
            time.sleep(1)
        sys.exit("a Flightdeck process stopped; see its output above")
    except KeyboardInterrupt:
        pass
    finally:
        stop(processes)


def _call(base: str, path: str, token: str, body: dict | None = None, timeout: float = 10):
    request = urllib.request.Request(
        f"{base}{path}", data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.load(answer)


def smoke() -> None:
    """The demo end to end on embedded defaults, in a scratch folder: set up, serve with the
    worker, sign-in page answers, an agent's event is ingested and read back, an operator's
    pause travels through the queue and the agent's long-poll and is acknowledged, then stop.
    Exits non-zero on any failure."""
    scratch = tempfile.mkdtemp(prefix="flightdeck-smoke-")
    env = {**os.environ, "DEBUG": "1", "FLIGHTDECK_VAR_DIR": scratch}
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
        env.pop(name, None)
    manage("migrate", "--no-input", "-v", "0", env=env)
    manage("bootstrap_demo", env=env)
    manage("seed_history", "--if-empty", "--runs", "5", env=env)

    def output(*command: str) -> str:
        return subprocess.run(
            [str(PYTHON), "manage.py", *command], cwd=ROOT, env=env, check=True,
            capture_output=True, text=True,
        ).stdout.strip().splitlines()[-1]

    token = output("create_agent_token", "--namespace", "demo", "--agent", "smoke", "-v", "0")
    operator = output("create_user_token", "--user", "admin", "--name", "smoke")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    processes = serve_commands(f"127.0.0.1:{port}", env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(60):
            try:
                with urllib.request.urlopen(f"{base}/accounts/login/", timeout=2) as answer:
                    assert answer.status == 200
                    break
            except OSError:
                time.sleep(0.5)
        else:
            sys.exit("smoke: the server did not answer")
        event = {"workflow_id": "smoke-1", "run_id": "r1", "event_id": 1, "type":
                 "workflow.started", "workflow_type": "smoke", "time": "2026-01-01T00:00:00Z"}
        stored = _call(base, "/api/v1/ingest", token, {"events": [event]})
        assert stored["stored"] == 1, stored
        run_uuid = stored["runs"][0]["uuid"]
        events = _call(base, f"/api/v1/runs/{run_uuid}/events", token)["events"]
        assert [e["type"] for e in events] == ["workflow.started"], events
        command = _call(base, f"/api/v1/runs/{run_uuid}/commands", operator,
                        {"kind": "pause", "reason": "smoke"})
        # The embedded broker polls about once a second: allow the worker a while.
        received = _call(base, "/api/v1/agent/commands?wait=30", token, timeout=40)["commands"]
        assert [c["id"] for c in received] == [command["id"]], received
        acked = _call(base, f"/api/v1/agent/commands/{command['id']}/ack", token,
                      {"status": "applied", "detail": "paused at a checkpoint"})
        assert acked["state"] == "applied", acked
    finally:
        stop(processes)
    manage("verify_history", env=env)
    shutil.rmtree(scratch, ignore_errors=True)
    print("smoke: the demo set up, served, ingested and read back an event, and delivered an "
          "operator's pause through the worker and the agent's long-poll", flush=True)


def test(args: list[str]) -> None:
    env = {**os.environ, "DEBUG": os.environ.get("DEBUG", "1")}
    result = subprocess.run([str(PYTHON), "-m", "pytest", *args], cwd=ROOT, env=env, check=False)
    sys.exit(result.returncode)


def main() -> None:
    commands = {"demo": demo, "test": test}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    ensure_environment(with_tests=sys.argv[1] == "test")
    commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
