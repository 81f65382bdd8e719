"""`manage.py refresh_governance`: due durability checks now, and with --backfill the
ingest-time findings of runs stored without ingest (bulk seeding, or before governance)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from access.models import Token
from governance.findings import for_namespace
from governance.models import Finding, WorkflowCheck
from governance.vocabulary import Rule
from history.seeding import bulk_load
from tests.governance.streams import Stream

pytestmark = pytest.mark.django_db


def test_backfill_finds_what_ingest_would_have(acme, support_bot):
    stream = Stream("wf-seeded").start()
    stream.call("shell_exec", {"n": 1})
    stream.call("issue_refund", {"amount": 1})
    stream.call("search_kb", {"q": 1}, key="k")
    stream.call("search_kb", {"q": 1}, key="k")
    bulk_load(Token.issue(agent=support_bot)[0], [stream.take()])
    assert not Finding.objects.exists() and not WorkflowCheck.objects.exists()
    out = StringIO()

    call_command("refresh_governance", "--backfill", "--namespace", "acme", stdout=out)

    assert "1 runs examined" in out.getvalue()
    assert "1 workflow ids checked" in out.getvalue()
    assert for_namespace(acme, refresh=False).rules_found() == {
        Rule.TOOL_OUTSIDE_ALLOW_LIST, Rule.PRIVILEGED_WITHOUT_APPROVAL, Rule.REDONE_WORK,
    }
    call_command("refresh_governance", "--backfill", stdout=StringIO())  # again: no change
    assert Finding.objects.count() == 3


def test_without_backfill_it_runs_the_due_checks(acme, send, support_token):
    send(support_token, Stream("wf-1").start())
    out = StringIO()

    call_command("refresh_governance", stdout=out)

    assert "1 workflow ids checked" in out.getvalue()
    assert not WorkflowCheck.objects.filter(due=True).exists()


def test_it_refuses_an_unknown_namespace():
    with pytest.raises(CommandError, match="no such namespace: nowhere"):
        call_command("refresh_governance", "--namespace", "nowhere", stdout=StringIO())
