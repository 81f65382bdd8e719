#!/usr/bin/env python3
"""Set up and run Flightdeck on a fresh machine: Python 3.11+ and git are all it needs.

    python3 dev.py demo     # install into .venv, migrate, create demo users and agents, serve,
                            # and run the reference agents
    python3 dev.py demo --smoke  # the same on a scratch database, checked end to end, then exit
    python3 dev.py test     # install into .venv and run the test suite (extra args go to pytest)

Uses SQLite and an embedded Celery broker unless DATABASE_URL / REDIS_URL are set.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import venv
from http.cookiejar import CookieJar
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".flightdeck-installed"


def ensure_environment(*, with_tests: bool) -> None:
    """Create .venv and install the project (with its test tools for `test`), again only when
    pyproject.toml (or sdk/pyproject.toml) changed since the last install or the tools are
    wanted now."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this script runs before the venv exists
        sys.exit("Flightdeck needs Python 3.11 or newer.")
    digest = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + (ROOT / "sdk" / "pyproject.toml").read_bytes()
    ).hexdigest()
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
    # The agent SDK (sdk/, its own distribution): the reference agents and the tests use it.
    run([PYTHON, "-m", "pip", "install", "--quiet", "-e", ROOT / "sdk"])
    STAMP.write_text(f"{digest} {'test' if target.endswith('[test]') else ''}".strip())


def run(command: list, **kwargs) -> None:
    result = subprocess.run([str(part) for part in command], cwd=ROOT, check=False, **kwargs)
    if result.returncode != 0:
        sys.exit(result.returncode)


def manage(*args: str, env: dict) -> None:
    run([PYTHON, "manage.py", *args], env=env)


def start(argv: list, env: dict) -> subprocess.Popen:
    """A child in its own process group (session), so that stopping it also stops what it
    forked: uvicorn's reloader-free worker, Celery's pool and beat, the agents' crash children.
    Ctrl-C reaches only this script, which then stops each group (see `stop`)."""
    return subprocess.Popen(
        [str(part) for part in argv], cwd=ROOT, env=env, start_new_session=os.name != "nt"
    )


def serve_commands(address: str, env: dict) -> list[subprocess.Popen]:
    """The processes of a running Flightdeck: the ASGI server (uvicorn; agents' long-polls wait
    without a thread each) and a Celery worker with its beat scheduler (delivery, the sweeper,
    following Temporal connections).
    """
    host, _, port = address.rpartition(":")
    server = start(
        [PYTHON, "-m", "uvicorn", "dashboard.asgi:application", "--host", host or "127.0.0.1",
         "--port", port, "--no-access-log"], env,
    )
    worker = start(
        # -c 3: a Temporal follow session holds a process for its length (docs/temporal.md).
        [BIN / "celery", "-A", "dashboard", "worker", "-B", "-Q", "commands,slow,exports,temporal",
         "-c", "3", "-l", "warning", "--schedule", var_dir(env) / "celerybeat-schedule"], env,
    )
    return [server, worker]


def reference_agents(env: dict, *args: str) -> list:
    """A command of the reference agents' process (`python -m reference_agents ...`), each
    agent with its own token from the file bootstrap_demo writes."""
    var = var_dir(env)
    return [PYTHON, "-m", "reference_agents", *args,
            "--tokens-file", var / "reference-agents.json", "--work-dir", var / "agents"]


def var_dir(env: dict) -> Path:
    folder = Path(env.get("FLIGHTDECK_VAR_DIR") or ROOT / "var")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM to each leader (Celery and uvicorn shut their own children down cleanly), then
    SIGKILL to whatever is left of each process group after 15 s: nothing it started, such as
    a pool child or an agent's crash-test child, outlives the demo."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + 15
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        _kill_group(process)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)


def _kill_group(process: subprocess.Popen) -> None:
    if os.name == "nt":
        if process.poll() is None:
            process.kill()
        return
    # The group outlives its leader, so it is signalled even after the leader exited (its id
    # cannot be reused while any member lives; with none left this is ProcessLookupError).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _stop_on_sigterm() -> None:
    """A SIGTERM to this script (CI, a service manager) stops the children like Ctrl-C."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def wait_for_server(base: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{base}/accounts/login/", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            sys.exit(f"the server at {base} did not answer within {timeout:.0f} s")
        time.sleep(0.5)


def loopback_address(args: list[str]) -> str:
    """The demo's address: `PORT` or `127.0.0.1:PORT` (default 127.0.0.1:8000). It runs with
    DEBUG on and demo passwords, so it is never bound beyond this machine."""
    address = args[0] if args else "127.0.0.1:8000"
    host, _, port = address.rpartition(":")
    if host not in ("", "127.0.0.1", "localhost") or not port.isdigit():
        sys.exit("usage: python3 dev.py demo [PORT | 127.0.0.1:PORT] (the demo serves on "
                 "127.0.0.1 only)")
    return f"127.0.0.1:{port}"


def demo(args: list[str]) -> None:
    if args[:1] == ["--smoke"]:
        smoke()
        return
    env = {**os.environ, "DEBUG": os.environ.get("DEBUG", "1")}
    address = loopback_address(args)
    manage("migrate", "--no-input", env=env)
    manage("bootstrap_demo", "--base-url", f"http://{address}", env=env)
    manage("seed_history", "--if-empty", "--runs", "40", env=env)
    backfill_governance(env)
    base = f"http://{address}"
    _stop_on_sigterm()
    processes = serve_commands(address, env)
    agents: list[subprocess.Popen] = []
    try:
        wait_for_server(base)
        agents.append(start(reference_agents(env, "demo", "--url", base), env))
        print(
            f"\nFlightdeck is at {base}/  (Ctrl-C stops it)\n"
            "Sign in as admin, viewer, operator, approver or investigator (passwords above, "
            "printed when each user was created).\nThe reference agents are producing runs in "
            "the support and research namespaces; refunds wait in the approvals inbox "
            f"({base}/approvals/).\n", flush=True,
        )
        while all(process.poll() is None for process in processes + agents):
            time.sleep(1)
        sys.exit("a Flightdeck process stopped; see its output above")
    except KeyboardInterrupt:
        pass
    finally:
        stop(agents)  # first, while the server can still take what they have spooled
        stop(processes)


# The namespaces seed_history fills in bulk: no ingest, so no governance receiver, ran on them.
# The reference agents' runs arrive through ingest and were examined as they were stored.
SEEDED_NAMESPACES = ("acme", "globex")


def backfill_governance(env: dict) -> None:
    """Governance findings for the seeded runs (the governance page is empty otherwise)."""
    for slug in SEEDED_NAMESPACES:
        manage("refresh_governance", "--backfill", "--namespace", slug, "-v", "0", env=env)


def _call(base: str, path: str, token: str, body: dict | None = None, timeout: float = 10):
    request = urllib.request.Request(
        f"{base}{path}", data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.load(answer)


def _poll(what: str, fetch, timeout: float):
    """fetch() until it returns something truthy; exit naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        found = fetch()
        if found:
            return found
        if time.monotonic() > deadline:
            sys.exit(f"smoke: gave up waiting for {what}")
        time.sleep(0.5)


def smoke() -> None:
    """The demo end to end on embedded defaults, in a scratch folder: set up, serve with the
    worker, sign-in page answers, an agent's event is ingested and read back, an operator's
    pause travels through the queue and the agent's long-poll and is acknowledged; then the
    support agent asks to refund an order, the approver approves through the API, the decision
    travels through the queue and worker to the agent, which refunds and finishes, and its
    history is complete: dense, `workflow.completed`, the chain verifies. Meanwhile the billing
    agent refunds without asking, once; the admin signs in and the support namespace's
    governance page lists that finding. Then stop. Exits non-zero on any failure."""
    scratch = tempfile.mkdtemp(prefix="flightdeck-smoke-")
    env = {**os.environ, "DEBUG": "1", "FLIGHTDECK_VAR_DIR": scratch}
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
        env.pop(name, None)
    manage("migrate", "--no-input", "-v", "0", env=env)
    admin_password = _bootstrap_for_smoke(env)
    manage("seed_history", "--if-empty", "--runs", "5", env=env)
    backfill_governance(env)

    def output(*command: str) -> str:
        return subprocess.run(
            [str(PYTHON), "manage.py", *command], cwd=ROOT, env=env, check=True,
            capture_output=True, text=True,
        ).stdout.strip().splitlines()[-1]

    token = output("create_agent_token", "--namespace", "demo", "--agent", "smoke", "-v", "0")
    operator = output("create_user_token", "--user", "operator", "--name", "smoke")
    approver = output("create_user_token", "--user", "approver", "--name", "smoke")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _stop_on_sigterm()
    processes = serve_commands(f"127.0.0.1:{port}", env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(base)
        _smoke_pause(base, token, operator)
        misbehaving = start(reference_agents(
            env, "run", "billing-agent", "--once", "--url", base, "--pace", "0"), env)
        processes.append(misbehaving)
        _smoke_approval(base, env, approver, processes)
        _smoke_governance(base, misbehaving, admin_password)
    finally:
        stop(processes)
    manage("verify_history", env=env)
    shutil.rmtree(scratch, ignore_errors=True)
    print("smoke: the demo set up, served, ingested and read back an event, delivered an "
          "operator's pause through the worker and the agent's long-poll, and the support "
          "agent finished a refund approved through the API, queue and worker, its history "
          "complete and verified; the governance page shows the billing agent's refund "
          "without approval", flush=True)


def _bootstrap_for_smoke(env: dict) -> str:
    """bootstrap_demo on the scratch database; the admin's password it prints (only now)."""
    result = subprocess.run([str(PYTHON), "manage.py", "bootstrap_demo"], cwd=ROOT, env=env,
                            check=True, capture_output=True, text=True)
    print(result.stdout, end="", flush=True)
    for line in result.stdout.splitlines():
        name, _, password = line.strip().partition(" ")
        if name == "admin" and password.strip():
            return password.strip()
    sys.exit("smoke: bootstrap_demo printed no password for admin")


def _smoke_governance(base: str, agent: subprocess.Popen, password: str) -> None:
    """The billing agent's refund without approval, on the support namespace's governance
    page, as the admin sees it after signing in through the login form."""
    try:
        code = agent.wait(timeout=60)
    except subprocess.TimeoutExpired:
        sys.exit("smoke: the billing agent did not finish")
    assert code == 0, f"the billing agent exited with {code}"
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    login = f"{base}/accounts/login/"
    form = browser.open(login, timeout=10).read().decode()
    marker = 'name="csrfmiddlewaretoken" value="'
    csrf = form[form.index(marker) + len(marker):].split('"', 1)[0]
    fields = {"username": "admin", "password": password, "csrfmiddlewaretoken": csrf}
    signed_in = browser.open(urllib.request.Request(
        login, data=urllib.parse.urlencode(fields).encode(), headers={"Referer": login},
    ), timeout=10)
    assert "/accounts/login/" not in signed_in.url, "smoke: the admin could not sign in"
    page = browser.open(f"{base}/namespaces/support/governance/", timeout=30)
    assert page.status == 200, page.status
    rows = page.read().decode().split('<tr id="finding-')[1:]
    assert any('class="finding privileged_without_approval"' in row
               and "<td>billing-agent</td>" in row for row in rows), \
        "smoke: the governance page does not list the billing agent's unapproved refund"


def _smoke_pause(base: str, token: str, operator: str) -> None:
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


def _smoke_approval(base: str, env: dict, approver: str, processes: list) -> None:
    workflow_id = "smoke-refund"
    agent = start(reference_agents(
        env, "run", "support-agent", "--once", "--intent", "refund", "--workflow-id",
        workflow_id, "--url", base, "--approval-timeout", "300", "--pace", "0",
    ), env)
    processes.append(agent)

    def the_run():
        found = _call(base, f"/api/v1/runs?workflow_id={workflow_id}", approver)["results"]
        return found[0] if found else None

    def its_request():
        pending = _call(base, "/api/v1/approvals", approver)
        return next((r for r in pending if r["run"] == run["uuid"]), None)

    run = _poll("the support agent's run", the_run, 90)
    request = _poll("the support agent's approval request", its_request, 90)
    assert request["action"] == "issue_refund", request
    decided = _call(base, f"/api/v1/approvals/{request['id']}/decision", approver,
                    {"decision": "approve", "comment": "smoke: refund approved"})
    assert decided["state"] == "approved", decided
    try:
        code = agent.wait(timeout=120)
    except subprocess.TimeoutExpired:
        sys.exit("smoke: the support agent did not finish after its approval")
    assert code == 0, f"the support agent exited with {code}"
    run = _call(base, f"/api/v1/runs/{run['uuid']}", approver)
    assert run["status"] == "completed", run
    assert run["contiguous_through"] == run["last_event_id"] == run["event_count"], run
    events = []
    after = 0
    while after is not None:
        page = _call(base, f"/api/v1/runs/{run['uuid']}/events?after={after}&limit=1000",
                     approver)
        events += page["events"]
        after = page["next_after"]
    assert [e["event_id"] for e in events] == list(range(1, len(events) + 1)), "not dense"
    assert events[-1]["type"] == "workflow.completed", events[-1]
    refunded = [e for e in events if e["type"] == "activity.completed"
                and e["attributes"].get("activity_type") == "issue_refund"]
    assert len(refunded) == 1, "the refund did not complete exactly once"
    asked = next(e for e in events if e["type"] == "approval.requested")
    assert asked["event_id"] < refunded[0]["event_id"], "refunded before asking"


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
