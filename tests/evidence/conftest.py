"""Evidence tests: a fixed signing key, bundles and digests in the test's own folders, a run
with commands, an approval and a secret, and helpers that build bundles and run verifiers.

The service fixtures come from tests/interventions/conftest.py (a private Redis around the
test database); test_export_worker.py starts its worker on the `exports` queue with them.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.core.management.base import CommandError

from evidence import exports
from evidence.scope import ExportScope
from evidence.verify_bundle import fingerprint_of
from history.models import Run
from interventions.approvals import decide
from interventions.commands import request_command
from tests.builders import event

# The private Redis and the test database's environment for worker processes, and the hook that
# shows a failed test the logs of the processes it started.
from tests.interventions.conftest import (  # noqa: F401
    on_private_redis,
    private_redis,
    pytest_runtest_makereport,
    service_env,
)

ROOT = Path(__file__).resolve().parents[2]
VERIFIER = ROOT / "evidence" / "verify_bundle.py"
TEST_SEED = bytes(range(32))
SECRET = "AKIA" + "ABCDEFGHIJKLMNOP"
SECRET_FIELD = "Zx9Qw3Er7Ty1Ui5Op2As"  # an api_key value: masked whole


@pytest.fixture(autouse=True)
def evidence_settings(settings, tmp_path):
    settings.EVIDENCE_SIGNING_KEY = base64.b64encode(TEST_SEED).decode()
    settings.EVIDENCE_SIGNING_KEY_FILE = ""
    settings.EVIDENCE_EXPORT_DIR = tmp_path / "exports"
    settings.EVIDENCE_DIGEST_DIR = str(tmp_path / "digests")
    settings.EVIDENCE_DIGEST_WEBHOOK_URL = ""
    return settings


@pytest.fixture
def fingerprint() -> str:
    return fingerprint_of(Ed25519PrivateKey.from_private_bytes(TEST_SEED).public_key())


def story(workflow_id: str = "wf-ev", run_id: str = "run-1") -> list[dict]:
    """Twelve events: started, tool calls, one with a secret in two places, an approval."""
    def e(event_id, type, **attributes):
        return event(event_id, type, workflow_id=workflow_id, run_id=run_id,
                     attributes=attributes)

    return [
        e(1, "workflow.started", labels={"team": "support"}, input={"ticket": "T-1"}),
        e(2, "decision.made", decision="look up the customer"),
        e(3, "activity.scheduled", activity_type="get_customer", kind="tool"),
        e(4, "activity.completed", activity_type="get_customer",
          output={"note": f"used {SECRET} to call the API", "api_key": SECRET_FIELD}),
        e(5, "decision.made", decision="refund", reason="<script>alert(1)</script>"),
        e(6, "approval.requested", request_id="r1", action="refund",
          summary="Refund 40 EUR", arguments={"amount": 40}),
        e(7, "activity.scheduled", activity_type="refund", kind="tool"),
        e(8, "activity.started", attempt=1),
        e(9, "activity.completed", output={"ok": True}),
        e(10, "decision.made", decision="=HYPERLINK(\"http://evil\")"),
        e(11, "marker.recorded", step=11),
        e(12, "workflow.completed", result={"resolved": True}),
    ]


@pytest.fixture
def evidence_run(ingest, agent_token, alice, monkeypatch) -> Run:
    """Run wf-ev of acme's support agent: 12 events (a secret in event 4), a pause sent by
    alice, an approval request decided by alice."""
    monkeypatch.setattr("interventions.commands.enqueue", lambda *args: None)
    events = story()
    response = ingest(agent_token, events[:8])
    assert response.status_code == 200, response.content
    run = Run.objects.get(workflow_id="wf-ev")
    request_command(run, alice, "pause", reason="checking the refund")
    decide(run.approval_requests.get(request_id="r1"), alice, "approve", "ok, small amount")
    response = ingest(agent_token, events[8:])
    assert response.status_code == 200, response.content
    run.refresh_from_db()
    return run


@pytest.fixture
def build_bundle(django_capture_on_commit_callbacks):
    """build_bundle(user, raw=False, **scope) -> (export, path of the zip): requested as the
    page does, built in this process as the worker does."""

    def build(user, *, raw: bool = False, reason: str = "", **params):
        from django.http import QueryDict

        query = QueryDict(mutable=True)
        for name, value in params.items():
            query[name] = value
        with django_capture_on_commit_callbacks(execute=False):
            export = exports.request_export(user, ExportScope.from_query(query), raw=raw,
                                            reason=reason or ("testing" if raw else ""))
        claimed = exports.claim(export.id)
        assert claimed is not None
        exports.build(claimed)
        claimed.refresh_from_db()
        assert claimed.state == "ready", claimed.error
        return claimed, exports.file_path(claimed)

    return build


# --- verifiers -------------------------------------------------------------------------------

# Runs the standalone verifier with Django and orjson made unimportable: it must need neither.
ISOLATED = """
import runpy, sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("django", "orjson", "history", "evidence", "dashboard"):
            raise ImportError(f"the standalone verifier imported {name}")
sys.meta_path.insert(0, Refuse())
sys.argv = ["verify_bundle.py", *sys.argv[1:]]
runpy.run_path(VERIFIER, run_name="__main__")
""".replace("VERIFIER", repr(str(VERIFIER)))


def run_standalone(*args: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    return subprocess.run(  # noqa: S603 - this interpreter, our own script
        [sys.executable, "-I", "-c", ISOLATED, *map(str, args)],
        capture_output=True, text=True, env=env, cwd="/", timeout=120, check=False,
    )


def run_command(*args: str) -> tuple[bool, str]:
    """manage.py verify_evidence: (verified, what it wrote)."""
    from io import StringIO

    out, err = StringIO(), StringIO()
    try:
        call_command("verify_evidence", *map(str, args), stdout=out, stderr=err)
    except CommandError as exc:
        return False, out.getvalue() + err.getvalue() + str(exc)
    return True, out.getvalue() + err.getvalue()


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def rewrite(path: Path, target: Path, change) -> Path:
    """Copy the bundle at `path` to `target`, passing each member's (name, bytes) through
    `change`, which returns new (name, bytes), or None to drop the member."""
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(target, "w") as out:
        for info in source.infolist():
            changed = change(info.filename, source.read(info))
            if changed is not None:
                out.writestr(changed[0], changed[1])
    return target
