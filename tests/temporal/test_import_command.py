"""manage.py import_temporal (temporal/management/commands/import_temporal.py)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from history.models import Run
from tests.temporal.samples import DATA, dumps, history


def run_command(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("import_temporal", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_it_imports_several_files_into_a_namespace(acme):
    out, _ = run_command(str(DATA / "reference_agent.json"), str(DATA / "kitchen_sink.json"),
                         "--namespace", "acme", "-v", "2")
    assert "reference_agent.json: 39 new events, 0 already stored, 1 runs into acme" in out
    assert "exp-1 / " in out
    assert set(Run.objects.values_list("workflow_id", flat=True)) == {"ticket-A", "exp-1"}


def test_importing_again_changes_nothing(acme):
    run_command(str(DATA / "reference_agent.json"), "--namespace", "acme")
    out, _ = run_command(str(DATA / "reference_agent.json"), "--namespace", "acme")
    assert "0 new events, 39 already stored" in out


def test_a_conflict_and_a_malformed_file_are_reported_and_fail_the_command(acme, tmp_path):
    run_command(str(DATA / "reference_agent.json"), "--namespace", "acme")
    changed = history()
    changed["events"][2]["eventTime"] = "2020-01-01T00:00:00Z"
    (tmp_path / "changed.json").write_bytes(dumps(changed))
    (tmp_path / "broken.json").write_bytes(b"[1, 2")
    err = StringIO()
    with pytest.raises(CommandError, match="2 of 2 files were not imported"):
        call_command("import_temporal", str(tmp_path / "changed.json"),
                     str(tmp_path / "broken.json"), "--namespace", "acme", stdout=StringIO(),
                     stderr=err)
    assert "changed.json: run ticket-A / " in err.getvalue()
    assert "already holds a different history: event 3 differs" in err.getvalue()
    assert "broken.json: the file is not JSON" in err.getvalue()


def test_dry_run_stores_nothing(acme):
    out, _ = run_command(str(DATA / "kitchen_sink.json"), "--namespace", "acme", "--dry-run")
    assert "would import 36 events in 1 runs" in out
    assert not Run.objects.exists()


def test_ids_for_a_history_that_lacks_them(acme, tmp_path):
    later = history()
    later["events"] = later["events"][3:]
    (tmp_path / "later.json").write_bytes(dumps(later))
    run_command(str(tmp_path / "later.json"), "--namespace", "acme", "--workflow-id", "wf-9",
                "--run-id", "r-9")
    assert Run.objects.get().workflow_id == "wf-9"


def test_an_unknown_namespace_or_file_is_a_clear_error(acme):
    with pytest.raises(CommandError, match="--namespace: there is no namespace 'nope'"):
        run_command(str(DATA / "kitchen_sink.json"), "--namespace", "nope")
    with pytest.raises(CommandError, match=r"missing\.json: No such file"):
        run_command("missing.json", "--namespace", "acme")
