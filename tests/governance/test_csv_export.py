"""The findings as CSV (`/namespaces/<slug>/governance/findings.csv`): members only, the
page's filters, spreadsheet formulas neutralised, no secret values."""

from __future__ import annotations

import csv
import io

import pytest

from access.models import Agent, Token
from governance.csv_export import COLUMNS
from governance.findings import for_namespace
from tests.governance.streams import Stream

pytestmark = pytest.mark.django_db

CSV = "/namespaces/acme/governance/findings.csv"
OPENAI_KEY = "sk-proj-" + "Q7vX2mK9pL4wR8tZ3nB6cF1hJ5sD0gYa"


def table(response) -> list[dict]:
    assert response.status_code == 200, response.content[:500]
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_the_export_neutralises_agent_strings(as_bob, acme, send):
    agent = Agent.objects.create(namespace=acme, name="@billing", allowed_tools=["x"])
    stream = Stream("-2+3").start()
    stream.call('=HYPERLINK("http://evil.example","click")', {"q": 1})
    send(Token.issue(agent=agent)[1], stream)

    rows = table(as_bob.get(CSV, {"rule": "tool_outside_allow_list"}))

    (row,) = rows
    assert row["subject"] == '\'=HYPERLINK("http://evil.example","click")'
    assert row["agent"] == "'@billing"
    assert row["workflow_id"] == "'-2+3"
    assert row["link"].startswith("http://testserver/runs/")
    assert row["link"].endswith(f"?event={row['event_id']}#event-{row['event_id']}")


def test_the_export_has_every_finding_and_the_agents_first(as_bob, acme, send, support_bot):
    Agent.objects.filter(pk=support_bot.pk).update(owner_user=None)
    stream = Stream().start()
    for n in range(60):  # more than a page: the export has them all
        stream.call("shell_exec", {"n": n})
    stream.call("search_kb", {"token": OPENAI_KEY})
    send(Token.issue(agent=support_bot)[1], stream)
    for_namespace(acme)

    response = as_bob.get(CSV)
    rows = table(response)

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="governance-acme.csv"'
    assert list(rows[0]) == COLUMNS
    assert rows[0]["rule"] == "agent_without_owner"
    assert sum(row["rule"] == "tool_outside_allow_list" for row in rows) == 60
    assert sum(row["rule"] == "secret_exposure" for row in rows) == 1
    assert OPENAI_KEY[8:] not in str(rows)


def test_an_outsider_gets_404_and_an_anonymous_visitor_signs_in(client, as_charlie, acme):
    assert as_charlie.get(CSV).status_code == 404
    client.logout()
    assert client.get(CSV).status_code == 302


def test_a_bad_filter_is_a_400_naming_it(as_bob, acme):
    response = as_bob.get(CSV, {"days": "2"})

    assert response.status_code == 400
    assert response.content.decode().startswith("days:")
