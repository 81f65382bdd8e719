"""The agents page (`GET /agents/`): the agents of the user's namespaces with owners, tokens
and run counts; unowned agents first and flagged."""

from __future__ import annotations

import html
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from access.models import Agent, Token
from history.models import Run

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert(1)</script>"
# Measured on SQLite and PostgreSQL: session, user, namespaces, agents, run counts, token counts,
# and the admin check, one per namespace (one here). It must not grow with the number of agents.
AGENTS_PAGE_QUERIES = 7


@pytest.fixture
def agents(acme, globex, alice) -> dict[str, Agent]:
    team = Group.objects.create(name="billing-team")
    return {
        "support": Agent.objects.create(namespace=acme, name="support-bot", owner_user=alice,
                                        allowed_tools=["search_kb", "send_email"]),
        "billing": Agent.objects.create(namespace=acme, name="billing-bot", owner_group=team,
                                        privileged=True),
        "orphan": Agent.objects.create(namespace=acme, name="orphan-bot"),
        "research": Agent.objects.create(namespace=globex, name="research-bot"),
    }


def add_runs(agent: Agent, status: str, count: int) -> None:
    Run.objects.bulk_create(
        Run(namespace=agent.namespace, agent=agent, workflow_id=f"{agent.name}-{status}-{n}",
            run_id="r", status=status, started_at=timezone.now())
        for n in range(count)
    )


def row_of(response, name: str) -> str:
    body = response.content.decode()
    return body.split(f"&agent={name}\">{name}</a>", 1)[1].split("</tr>", 1)[0]


def names(response) -> list[str]:
    body = response.content.decode()
    return [html.unescape(part.split("&agent=", 1)[1].split('"', 1)[0])
            for part in body.split('<td><a href="/?namespace=')[1:]]




def test_it_lists_the_agents_of_the_users_namespaces_only(as_bob, agents):
    response = as_bob.get("/agents/")

    assert response.status_code == 200
    assert b"<html" in response.content
    assert sorted(names(response)) == ["billing-bot", "orphan-bot", "support-bot"]
    assert b"research-bot" not in response.content
    assert b"globex" not in response.content


def test_an_outsider_sees_only_their_namespaces_agents(client, charlie, agents):
    client.force_login(charlie)

    response = client.get("/agents/")

    assert names(response) == ["research-bot"]
    assert b"support-bot" not in response.content


def test_a_user_with_no_namespace_sees_no_agents(client, django_user_model, agents):
    client.force_login(django_user_model.objects.create_user("nobody", password="x" * 12))

    response = client.get("/agents/")

    assert b"No agents in your namespaces yet." in response.content


def test_unowned_agents_come_first_and_are_flagged(as_bob, agents):
    response = as_bob.get("/agents/")

    assert names(response)[0] == "orphan-bot"
    assert '<tr class="unowned">' in response.content.decode().split("orphan-bot", 1)[0][-400:]
    assert '<span class="flag">no owner</span>' in row_of(response, "orphan-bot")
    assert "no owner" not in row_of(response, "support-bot")


def test_it_shows_owners_tools_and_privilege(as_bob, agents):
    response = as_bob.get("/agents/")

    support = row_of(response, "support-bot")
    billing = row_of(response, "billing-bot")
    assert "alice" in support
    assert "<code>search_kb</code> <code>send_email</code>" in support
    assert "<td>no</td>" in support
    assert "billing-team" in billing
    assert "<td>yes</td>" in billing
    assert "none declared" in billing


def test_it_counts_runs_by_status(as_bob, agents):
    add_runs(agents["support"], "completed", 3)
    add_runs(agents["support"], "failed", 2)
    add_runs(agents["billing"], "running", 1)
    add_runs(agents["research"], "completed", 7)

    response = as_bob.get("/agents/")

    rows = {row["agent"].name: row["counts"] for row in response.context["rows"]}
    assert rows == {
        "support-bot": [("completed", 3), ("failed", 2)],
        "billing-bot": [("running", 1)],
        "orphan-bot": [],
    }
    support = row_of(response, "support-bot")
    assert "completed</span>\n 3" in support
    assert "failed</span>\n 2" in support
    assert '<span class="muted">none</span>' in row_of(response, "orphan-bot")


def test_it_counts_active_tokens_and_their_last_use(as_bob, agents):
    used, _ = Token.issue(agent=agents["support"])
    Token.issue(agent=agents["support"])
    revoked, _ = Token.issue(agent=agents["support"])
    revoked.revoke()
    Token.objects.filter(pk=used.pk).update(last_used_at=timezone.now() - timedelta(hours=3))

    response = as_bob.get("/agents/")

    rows = {row["agent"].name: row for row in response.context["rows"]}
    assert rows["support-bot"]["active_tokens"] == 2
    assert rows["orphan-bot"]["active_tokens"] == 0
    assert "2 active" in row_of(response, "support-bot")
    assert "used 3\xa0hours ago" in row_of(response, "support-bot")
    assert "0 active" in row_of(response, "orphan-bot")


def test_a_revoked_tokens_use_still_counts_as_the_last_use(as_bob, agents):
    revoked, _ = Token.issue(agent=agents["orphan"])
    Token.objects.filter(pk=revoked.pk).update(last_used_at=timezone.now())
    revoked.refresh_from_db()
    revoked.revoke()

    rows = {row["agent"].name: row for row in as_bob.get("/agents/").context["rows"]}

    assert rows["orphan-bot"]["active_tokens"] == 0
    assert rows["orphan-bot"]["token_last_used"] is not None


def test_each_agent_links_to_its_runs(as_bob, agents):
    response = as_bob.get("/agents/")

    assert b'href="/?namespace=acme&agent=support-bot"' in response.content


def test_an_admin_gets_edit_links_and_a_viewer_does_not(client, alice, bob, agents):
    client.force_login(alice)
    admin_page = client.get("/agents/").content.decode()
    client.force_login(bob)
    viewer_page = client.get("/agents/").content.decode()

    edit = f'href="/namespaces/acme/agents/{agents["support"].pk}/"'
    assert edit in admin_page
    assert edit not in viewer_page
    assert ">edit</a>" not in viewer_page


def test_it_links_each_namespaces_members(as_bob, agents):
    assert b'href="/namespaces/acme/members/"' in as_bob.get("/agents/").content


def test_it_refuses_post(as_bob, agents):
    assert as_bob.post("/agents/").status_code == 405


def test_an_anonymous_visitor_is_sent_to_sign_in(client, agents):
    response = client.get("/agents/")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/agents/"


def test_agent_names_descriptions_and_tools_are_escaped(as_bob, acme):
    Agent.objects.create(namespace=acme, name=SCRIPT, description=SCRIPT,
                         allowed_tools=[SCRIPT])

    response = as_bob.get("/agents/")

    assert SCRIPT.encode() not in response.content
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in response.content


def _queries(client) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get("/agents/").status_code == 200
    return len(captured)


def test_the_page_takes_a_fixed_number_of_queries(as_bob, acme, agents,
                                                  django_assert_max_num_queries):
    few = _queries(as_bob)
    for number in range(30):
        agent = Agent.objects.create(namespace=acme, name=f"bot-{number}")
        Token.issue(agent=agent)
        add_runs(agent, "completed", 2)

    with django_assert_max_num_queries(AGENTS_PAGE_QUERIES):
        as_bob.get("/agents/")
    assert _queries(as_bob) == few == AGENTS_PAGE_QUERIES
