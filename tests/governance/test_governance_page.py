"""The governance page (`/namespaces/<slug>/governance/`): members only (404 for anyone else,
htmx requests included), every finding linked to its events, counts per day, paging, a fixed
number of queries whatever the data."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from access.models import Agent, Token
from governance import durability_checks
from governance.findings import for_namespace
from governance.models import Finding
from tests.governance.streams import Stream

pytest_plugins = ["tests.interventions.personas"]
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("broker")]

PAGE = "/namespaces/acme/governance/"
SCRIPT = "<script>alert(1)</script>"
HTMX_REPORT = {"HX-Request": "true", "HX-Target": "governance-report"}
HTMX_FINDINGS = {"HX-Request": "true", "HX-Target": "governance-findings"}


def misbehave(send, token, workflow_id: str = "wf-bad", tools: int = 1) -> Stream:
    stream = Stream(workflow_id).start()
    for n in range(tools):
        stream.call("shell_exec", {"n": n})
    stream.finish()
    send(token, stream)
    return stream


def shown(response) -> list[int]:
    return [int(n) for n in re.findall(r'<tr id="finding-(\d+)"', response.content.decode())]


# --- who may see it -------------------------------------------------------------------------------


def test_a_viewer_sees_each_finding_linked_to_its_event(as_bob, send, support_token):
    misbehave(send, support_token)
    finding = Finding.objects.get()

    response = as_bob.get(PAGE)

    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" in body
    assert shown(response) == [finding.pk]
    link = f"/runs/{finding.run.uuid}/?event={finding.event_id}#event-{finding.event_id}"
    assert f'href="{link}"' in body
    assert "called shell_exec, which is not in support-bot&#x27;s allow-list" in body


def test_an_anonymous_visitor_is_sent_to_sign_in(client, acme):
    response = client.get(PAGE)

    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={PAGE}"


@pytest.mark.parametrize("headers", [{}, HTMX_REPORT, HTMX_FINDINGS])
def test_a_member_of_another_namespace_gets_404(as_charlie, send, support_token, headers):
    misbehave(send, support_token)

    response = as_charlie.get(PAGE, headers=headers)

    assert response.status_code == 404
    assert b"shell_exec" not in response.content


def test_an_unknown_namespace_is_404(as_bob):
    assert as_bob.get("/namespaces/nowhere/governance/").status_code == 404


def test_it_refuses_other_methods(as_bob):
    assert as_bob.post(PAGE).status_code == 405
    assert as_bob.delete(PAGE).status_code == 405


def test_the_index_lists_ones_namespaces(as_charlie, acme):
    body = as_charlie.get("/governance/").content.decode()

    assert "/namespaces/globex/governance/" in body
    assert "/namespaces/acme/governance/" not in body


# --- regions and filters ------------------------------------------------------------------------


def test_htmx_gets_the_report_alone(as_bob, send, support_token):
    misbehave(send, support_token)

    body = as_bob.get(PAGE, {"days": "7"}, headers=HTMX_REPORT).content.decode()

    assert "<html" not in body
    assert body.lstrip().startswith('<div id="governance-report"')
    assert "shell_exec" in body


def test_htmx_gets_the_findings_alone(as_bob, send, support_token):
    misbehave(send, support_token)

    body = as_bob.get(PAGE, headers=HTMX_FINDINGS).content.decode()

    assert body.lstrip().startswith('<section id="governance-findings"')


def test_filtering_by_rule(as_bob, acme, send, support_token):
    stream = misbehave(send, support_token)
    stream.call("search_kb", {"api_key": "sk-proj-" + "Q7vX2mK9pL4wR8tZ3nB6cF1hJ5sD0gYa"})
    send(support_token, stream)
    secret = Finding.objects.get(rule="secret_exposure")

    assert shown(as_bob.get(PAGE, {"rule": "secret_exposure"})) == [secret.pk]
    assert len(shown(as_bob.get(PAGE))) == 2


@pytest.mark.parametrize("query", [
    {"days": "5"}, {"days": "x"}, {"rule": "nope"}, {"before": "x"}, {"before": "-1"},
    {"before": "999999"},
])
def test_bad_filters_are_a_400_naming_the_field(as_bob, acme, query):
    response = as_bob.get(PAGE, query)

    assert response.status_code == 400
    assert f"<li>{next(iter(query))}:" in response.content.decode()


def test_a_cursor_from_another_namespace_is_refused(as_bob, globex, send):
    agent = Agent.objects.create(namespace=globex, name="other", allowed_tools=["web"])
    misbehave(send, Token.issue(agent=agent)[1])

    response = as_bob.get(PAGE, {"before": Finding.objects.get().pk})

    assert response.status_code == 400


def test_pages_go_back_by_cursor(as_bob, send, support_token):
    misbehave(send, support_token, tools=60)
    newest_first = list(Finding.objects.order_by("-received_at", "-id").values_list("pk",
                                                                                   flat=True))

    first = as_bob.get(PAGE)
    assert shown(first) == newest_first[:50]
    older = re.search(r'href="\?([^"]*before=\d+)"', first.content.decode()).group(1)
    second = as_bob.get(f"{PAGE}?{older.replace('&amp;', '&')}", headers=HTMX_FINDINGS)
    assert shown(second) == newest_first[50:]
    assert b"Older findings" not in second.content


def test_agent_strings_are_shown_as_text(as_bob, acme, send):
    agent = Agent.objects.create(namespace=acme, name=SCRIPT[:200], allowed_tools=["x"])
    stream = Stream(SCRIPT).start()
    stream.call(SCRIPT, {"q": SCRIPT})
    send(Token.issue(agent=agent)[1], stream)

    body = as_bob.get(PAGE).content.decode()

    assert SCRIPT not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


# --- counts over time, agents, inventory ----------------------------------------------------


def test_counts_per_rule_and_a_bar_per_day(as_bob, send, support_token):
    misbehave(send, support_token, tools=3)

    body = as_bob.get(PAGE, {"days": "7"}).content.decode()

    assert len(re.findall(r'<rect class="bar"', body)) == 8  # today and the 7 days before
    assert ": 3 findings</title>" in body
    row = re.search(r'rule=tool_outside_allow_list">[^<]+</a></td><td class="num">(\d+)', body)
    assert row.group(1) == "3"


def test_agents_without_an_owner_link_to_their_runs(as_bob, acme, send, support_bot):
    Agent.objects.filter(pk=support_bot.pk).update(owner_user=None)
    misbehave(send, Token.issue(agent=support_bot)[1])

    body = as_bob.get(PAGE).content.decode()

    assert 'class="finding agent_without_owner"' in body
    assert "/?namespace=acme&amp;agent=support-bot" in body
    assert "1 run without an owner" in body


def test_pending_and_bounded_checks_are_stated(as_bob, acme, send, support_token, monkeypatch):
    send(support_token, Stream("wf-1", "a").start())
    assert "1 workflow id waiting for its durability check" in as_bob.get(PAGE).content.decode()
    monkeypatch.setattr(durability_checks, "MAX_RUNS", 1)
    send(support_token, Stream("wf-1", "b").start())
    durability_checks.run_pending()

    body = as_bob.get(PAGE).content.decode()

    assert "waiting for" not in body
    assert "Bounded: 1 workflow id has more runs or activity events" in body


def test_the_inventory_links_the_types_that_did_not_survive(as_bob, acme, send, support_token):
    stream = Stream("wf-lost", workflow_type="billing").start()
    stream.call("charge", {"n": 1}, key="k")
    stream.call("charge", {"n": 1}, key="k")
    send(support_token, stream)
    for_namespace(acme)

    body = as_bob.get(PAGE).content.decode()

    assert "/?namespace=acme&amp;workflow_type=billing" in body
    assert "1 of 1 interrupted" in body


# --- cost ---------------------------------------------------------------------------------------


def test_the_page_costs_a_fixed_number_of_queries(as_bob, acme, send, support_bot):
    token = Token.issue(agent=support_bot)[1]
    Agent.objects.create(namespace=acme, name="ownerless", allowed_tools=[])
    misbehave(send, token, "wf-0")
    for_namespace(acme)
    with CaptureQueriesContext(connection) as few:
        assert as_bob.get(PAGE).status_code == 200
    Agent.objects.filter(pk=support_bot.pk).update(owner_user=None)
    for n in range(1, 8):
        misbehave(send, token, f"wf-{n}", tools=10)
        stream = Stream(f"wf-{n}", "again").start()
        stream.call("search_kb", {"q": 1}, key="same")
        stream.call("search_kb", {"q": 1}, key="same")
        send(token, stream)
    for_namespace(acme)
    with CaptureQueriesContext(connection) as many:
        response = as_bob.get(PAGE)

    assert len(shown(response)) == 50
    assert len(many) == len(few) <= 10
