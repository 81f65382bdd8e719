"""python -m reference_agents: run one reference agent, or all of them for the demo.

    python -m reference_agents list
    python -m reference_agents run support-agent --once [--intent refund] [--run-id ID]
    python -m reference_agents run research-agent --loop --interval 30
    python -m reference_agents demo [--agents a,b] [--interval-scale 0.5]

The server comes from --url, else FLIGHTDECK_URL; the token from --token, else the agent's
entry in --tokens-file (which `manage.py bootstrap_demo` writes), else FLIGHTDECK_TOKEN.
Prefer the environment or the file to --token: a command line is visible to other users.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from reference_agents import catalogue, runner
from reference_agents.jobs import Session
from reference_agents.model import FakeModel

DEFAULT_WORK_DIR = Path(__file__).resolve().parents[1] / "var" / "agents"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("FLIGHTDECK_URL"),
                        help="Flightdeck's address (default: FLIGHTDECK_URL)")
    parser.add_argument("--tokens-file", type=Path,
                        help="JSON file of agent tokens written by bootstrap_demo")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR,
                        help="where each agent keeps its spool and files (default: var/agents)")
    parser.add_argument("--approval-timeout", type=int, default=900,
                        help="seconds an approval request waits before it expires (default 900)")
    parser.add_argument("--pace", type=float, default=1.0,
                        help="scale the fake model's thinking time, 0.3-2 s per answer "
                             "(default 1; 0 answers at once)")
    parser.add_argument("--no-commands", action="store_true",
                        help="do not poll for operator commands (a server without the pull "
                             "channel)")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m reference_agents", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the agents, their scope and what they do wrong")

    one = commands.add_parser("run", help="run one agent")
    one.add_argument("name", choices=sorted(catalogue.AGENTS))
    _common(one)
    one.add_argument("--token", help="the agent's token (default: FLIGHTDECK_TOKEN or the file)")
    mode = one.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="one job, then exit (the default)")
    mode.add_argument("--loop", action="store_true", help="jobs until interrupted")
    one.add_argument("--interval", type=float, help="seconds between jobs with --loop")
    one.add_argument("--number", type=int, default=0, help="which job of the stream (default 0)")
    one.add_argument("--workflow-id", help="use this workflow id instead of the job's")
    one.add_argument("--run-id", help="use this run id: the same one again resumes that run")
    one.add_argument("--intent", help="support-agent: the kind of ticket (refund, shipping, ...)")
    one.add_argument("--batch", help=argparse.SUPPRESS)  # crash_resume's children
    one.add_argument("--attempt", action="store_true", help=argparse.SUPPRESS)
    one.add_argument("--crash-after", type=int, help=argparse.SUPPRESS)

    everyone = commands.add_parser("demo", help="run every agent continuously")
    _common(everyone)
    everyone.add_argument("--agents", help="comma-separated names (default: all)")
    everyone.add_argument("--interval-scale", type=float, default=1.0,
                          help="multiply every agent's pause between runs (default 1)")
    return parser.parse_args(argv)


def token_for(name: str, args: argparse.Namespace) -> str | None:
    """--token, else the agent's entry in --tokens-file, else FLIGHTDECK_TOKEN. A file named on
    the command line wins over the environment: `dev.py demo` run from a shell where the SDK's
    quick start exported FLIGHTDECK_TOKEN must still give each agent its own token."""
    if getattr(args, "token", None):
        return args.token
    if args.tokens_file:
        return runner.read_tokens(args.tokens_file).get(name)
    return os.environ.get("FLIGHTDECK_TOKEN")


def session_for(name: str, args: argparse.Namespace) -> Session:
    token = token_for(name, args)
    if not token:
        raise SystemExit(f"no token for {name}: pass --tokens-file, or set FLIGHTDECK_TOKEN")
    session = Session(url=args.url, token=token, work_dir=args.work_dir / name,
                      approval_timeout=args.approval_timeout,
                      model=FakeModel(pace=args.pace), poll_commands=not args.no_commands)
    if getattr(args, "batch", None):
        session.batch = args.batch
    return session


def run_one(args: argparse.Namespace) -> int:
    agent = catalogue.agent(args.name)
    session = session_for(args.name, args)
    session.crash_after = args.crash_after
    hints = {"intent": args.intent} if args.intent else {}
    try:
        if args.loop:
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            with contextlib.suppress(KeyboardInterrupt):
                runner.loop(agent, session, stop, first_number=args.number,
                            interval=args.interval if args.interval is not None
                            else agent.INTERVAL)
            return 0
        job = agent.job(args.number, session, **hints)
        job.workflow_id = args.workflow_id or job.workflow_id
        job.run_id = args.run_id or job.run_id
        result = runner.run_job(agent, session, job, attempt_only=args.attempt)
        print(json.dumps(result, default=str), flush=True)
        return 0
    finally:
        session.close()


def run_demo(args: argparse.Namespace) -> int:
    names = args.agents.split(",") if args.agents else list(catalogue.AGENTS)
    agents = [catalogue.agent(name) for name in names]
    sessions = {agent.NAME: session_for(agent.NAME, args) for agent in agents}
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threads = runner.demo(agents, sessions, stop, interval_scale=args.interval_scale)
    log = logging.getLogger("reference_agents")
    log.info("%d reference agents at work against %s", len(agents), args.url or "FLIGHTDECK_URL")
    try:
        while not stop.wait(1):
            pass
    except KeyboardInterrupt:
        stop.set()
    log.info("stopping: unfinished runs stay open and are resumed at the next start")
    deadline = time.monotonic() + 5
    for thread in threads:  # those between steps stop now; those waiting on a person do not
        thread.join(max(0, deadline - time.monotonic()))
    for session in sessions.values():
        session.close(timeout=5)
    # Threads still waiting (for an approval, say) are abandoned. os._exit rather than a normal
    # exit: the interpreter's shutdown would race those daemon threads (a thread writing a log
    # line then can abort the process), and everything they recorded is in the spool already.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def list_agents() -> int:
    for name, agent in catalogue.AGENTS.items():
        flag = f"  MISBEHAVES: {agent.MISBEHAVIOUR}" if agent.MISBEHAVIOUR else ""
        print(f"{name} ({agent.NAMESPACE}): {agent.DESCRIPTION}{flag}\n"
              f"    tools: {', '.join(agent.TOOLS)}; privileged: "
              f"{', '.join(agent.PRIVILEGED) or 'none'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(threadName)s %(message)s")
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.command == "list":
        return list_agents()
    if args.command == "run":
        return run_one(args)
    return run_demo(args)


if __name__ == "__main__":
    sys.exit(main())
