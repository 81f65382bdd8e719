"""python -m reference_agents: `list`, `run` of one agent with the demo's token file, and
`demo`, which keeps every agent producing runs until it is told to stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from history.models import Run
from reference_agents.catalogue import AGENTS
from tests.interventions.services import wait_until

ROOT = Path(__file__).resolve().parents[2]


def agents_process(*args: str, **options) -> subprocess.Popen:
    env = {key: value for key, value in os.environ.items()
           if key not in ("FLIGHTDECK_TOKEN", "FLIGHTDECK_URL")}
    return subprocess.Popen(  # noqa: S603 - this interpreter, our own module
        [sys.executable, "-m", "reference_agents", *args], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **options,
    )


def test_list_names_every_agent_its_scope_and_its_misbehaviour():
    process = agents_process("list")
    out, _ = process.communicate(timeout=30)

    assert process.returncode == 0
    for name, module in AGENTS.items():
        assert f"{name} ({module.NAMESPACE})" in out
        if module.MISBEHAVIOUR:
            assert module.MISBEHAVIOUR in out


def test_run_without_a_token_says_where_to_get_one(tmp_path):
    process = agents_process("run", "ops-agent", "--once", "--url", "http://127.0.0.1:9")
    _, err = process.communicate(timeout=30)

    assert process.returncode != 0
    assert "no token for ops-agent" in err


@pytest.mark.django_db(transaction=True)
def test_run_once_records_a_run_with_the_agents_token(quiet_live_server, demo_tokens, tmp_path):
    process = agents_process(
        "run", "ops-agent", "--once", "--number", "3", "--url", quiet_live_server.url,
        "--tokens-file", str(tmp_path / "tokens.json"), "--work-dir", str(tmp_path / "agents"),
        "--no-commands", "--pace", "0",  # see quiet_live_server; no thinking time
    )
    out, err = process.communicate(timeout=120)

    assert process.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["remedy"] == "restart_service"
    run = Run.objects.get(agent__name="ops-agent")
    assert run.status == "completed" and run.labels["service"] == "notifications"
    assert not any(token in out + err for token in demo_tokens.values())


@pytest.mark.django_db(transaction=True)
def test_demo_keeps_producing_runs_until_stopped(quiet_live_server, demo_tokens, tmp_path):
    process = agents_process(
        "demo", "--agents", "ops-agent,crm-sync-agent", "--interval-scale", "0.01",
        "--url", quiet_live_server.url, "--tokens-file", str(tmp_path / "tokens.json"),
        "--work-dir", str(tmp_path / "agents"), "--no-commands", "--pace", "0",
    )
    try:
        for name in ("ops-agent", "crm-sync-agent"):
            wait_until(lambda name=name: Run.objects.filter(
                agent__name=name, status="completed").count() >= 2,
                timeout=120, interval=0.5, what=f"two completed runs of {name}")
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert not Run.objects.exclude(agent__name__in=["ops-agent", "crm-sync-agent"]).exists()


def test_the_tokens_file_wins_over_an_exported_flightdeck_token(tmp_path, monkeypatch):
    """`dev.py demo` from a shell where the SDK's quick start exported FLIGHTDECK_TOKEN: each
    agent still gets its own token from the file, not that one for all of them."""
    from reference_agents.__main__ import parse, token_for

    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"agents": {"support-agent": "fda_support_own"}}))
    monkeypatch.setenv("FLIGHTDECK_TOKEN", "fda_other_exported")

    from_file = parse(["demo", "--tokens-file", str(tokens)])
    assert token_for("support-agent", from_file) == "fda_support_own"
    assert token_for("billing-agent", from_file) is None  # not the exported one either
    assert token_for("support-agent", parse(["demo"])) == "fda_other_exported"
    explicit = parse(["run", "support-agent", "--token", "fda_x_given", "--tokens-file",
                      str(tokens)])
    assert token_for("support-agent", explicit) == "fda_x_given"
