"""An agent's connector (`/namespaces/<slug>/agents/<id>/connector/`): pull or webhook, the
webhook's URL checked against private addresses, its signing secret made on the server, shown
once, stored sealed, and never shown again (pages, admin, audit log)."""

from __future__ import annotations

import pytest
from django.test import Client

from access.encryption import unseal
from access.models import Agent
from audit.models import AuditEntry
from interventions import signing
from interventions.models import AgentConnector

pytestmark = pytest.mark.django_db

PUBLIC_URL = "https://93.184.215.14/flightdeck/commands"
HTMX = {"HX-Request": "true", "HX-Target": "connector"}
SCRIPT = "<script>alert(1)</script>"


def url_of(agent: Agent, slug: str = "acme") -> str:
    return f"/namespaces/{slug}/agents/{agent.pk}/connector/"


def webhook(url: str = PUBLIC_URL, **fields) -> dict:
    return {"kind": "webhook", "url": url, "action": "save", **fields}


def shown_secret(response) -> str:
    body = response.content.decode()
    start = body.index('<code class="secret" id="new-secret">') + len(
        '<code class="secret" id="new-secret">'
    )
    return body[start: body.index("</code>", start)]


def stored_secret(agent: Agent) -> str:
    return unseal(AgentConnector.objects.get(agent=agent).secret_sealed)


# --- showing ------------------------------------------------------------------------------------


def test_an_agent_without_a_connector_uses_pull(as_alice, support_agent):
    response = as_alice.get(url_of(support_agent))

    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" in body
    assert "How commands reach support-bot" in body
    assert "(the default)" in body
    assert 'value="pull"' in body and 'value="webhook"' in body
    assert "Save and rotate the secret" not in body


def test_the_agents_page_and_the_agent_form_link_to_it(as_alice, support_agent):
    link = f'href="{url_of(support_agent)}"'

    assert link in as_alice.get("/agents/").content.decode()
    assert link in as_alice.get(f"/namespaces/acme/agents/{support_agent.pk}/").content.decode()


def test_a_viewer_gets_403(as_bob, support_agent):
    assert as_bob.get(url_of(support_agent)).status_code == 403
    assert as_bob.post(url_of(support_agent), webhook()).status_code == 403
    assert not AgentConnector.objects.exists()


def test_an_outsider_gets_404(as_charlie, support_agent):
    assert as_charlie.get(url_of(support_agent)).status_code == 404
    assert as_charlie.post(url_of(support_agent), webhook()).status_code == 404
    assert not AgentConnector.objects.exists()


def test_an_agent_of_another_namespace_is_404_through_this_one(as_alice, globex):
    theirs = Agent.objects.create(namespace=globex, name="research-bot")

    assert as_alice.get(url_of(theirs)).status_code == 404
    assert as_alice.post(url_of(theirs), webhook()).status_code == 404
    assert as_alice.get(url_of(theirs, slug="globex")).status_code == 404


def test_an_unknown_agent_is_404(as_alice, acme):
    assert as_alice.get("/namespaces/acme/agents/999999/connector/").status_code == 404


def test_it_refuses_other_methods(as_alice, support_agent):
    assert as_alice.put(url_of(support_agent)).status_code == 405
    assert as_alice.delete(url_of(support_agent)).status_code == 405


def test_an_anonymous_visitor_is_sent_to_sign_in(client, support_agent):
    response = client.get(url_of(support_agent))

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_saving_needs_the_csrf_token(alice, support_agent):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)

    assert browser.post(url_of(support_agent), webhook()).status_code == 403
    assert not AgentConnector.objects.exists()


# --- the webhook and its secret -----------------------------------------------------------------


def test_registering_a_webhook_shows_its_secret_once(as_alice, support_agent):
    response = as_alice.post(url_of(support_agent), webhook())

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    secret = shown_secret(response)
    assert secret.startswith(signing.SECRET_PREFIX)
    assert b"it will not be shown again" in response.content
    connector = AgentConnector.objects.get(agent=support_agent)
    assert (connector.kind, connector.url, connector.updated_by.username) == (
        "webhook", PUBLIC_URL, "alice"
    )
    assert secret not in connector.secret_sealed
    assert stored_secret(support_agent) == secret
    # Signed with it, a receiver accepts the message.
    headers = signing.headers(secret, "m1", 1_700_000_000, b"{}")
    assert signing.verify(secret, headers, b"{}", now=1_700_000_000)

    again = as_alice.get(url_of(support_agent))
    assert secret.encode() not in again.content
    assert connector.secret_sealed.encode() not in again.content
    assert b"set, stored encrypted" in again.content
    assert b"Save and rotate the secret" in again.content


def test_the_secret_is_in_no_message_or_cookie(as_alice, support_agent):
    response = as_alice.post(url_of(support_agent), webhook())
    secret = shown_secret(response)

    assert all(secret not in morsel.value for morsel in response.cookies.values())
    following = as_alice.get("/agents/")
    assert secret.encode() not in following.content
    assert all(secret not in morsel.value for morsel in as_alice.cookies.values())


def test_registering_with_htmx_shows_the_secret_in_the_region(as_alice, support_agent):
    response = as_alice.post(url_of(support_agent), webhook(), headers=HTMX)

    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in body
    assert body.lstrip().startswith('<section id="connector"')
    assert shown_secret(response) == stored_secret(support_agent)


def test_saving_the_same_webhook_keeps_its_secret(as_alice, support_agent):
    first = shown_secret(as_alice.post(url_of(support_agent), webhook()))

    response = as_alice.post(url_of(support_agent), webhook(url=PUBLIC_URL + "/v2"))

    assert response.status_code == 302
    assert response["Location"] == url_of(support_agent)
    assert stored_secret(support_agent) == first
    assert AgentConnector.objects.get().url == PUBLIC_URL + "/v2"
    assert first.encode() not in as_alice.get(url_of(support_agent)).content


def test_rotating_makes_a_new_secret(as_alice, support_agent):
    first = shown_secret(as_alice.post(url_of(support_agent), webhook()))

    response = as_alice.post(url_of(support_agent), webhook(action="rotate"))

    second = shown_secret(response)
    assert second != first
    assert stored_secret(support_agent) == second
    assert first.encode() not in response.content


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8000/hook",
    "https://10.1.2.3/hook",
    "https://169.254.169.254/latest/meta-data",
    "http://[::1]/hook",
    "https://192.168.0.10/hook",
])
def test_private_and_loopback_addresses_are_refused(as_alice, support_agent, url):
    response = as_alice.post(url_of(support_agent), webhook(url=url))

    assert response.status_code == 400
    assert b"loopback, private or link-local" in response.content
    assert b"it will not be shown again" not in response.content
    assert not AgentConnector.objects.exists()
    assert not AuditEntry.objects.filter(action="connector.changed").exists()


def test_an_allowed_network_may_be_private(as_alice, support_agent, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]

    response = as_alice.post(url_of(support_agent), webhook(url="http://127.0.0.1:9/hook"))

    assert response.status_code == 200
    assert AgentConnector.objects.get().url == "http://127.0.0.1:9/hook"


@pytest.mark.parametrize(("url", "message"), [
    ("", b"A webhook needs a URL."),
    ("ftp://93.184.215.14/x", b"must be an http or https URL with a host"),
    ("https://user:pw@93.184.215.14/x", b"must not carry a user name or password"),
    ("not a url", b"Enter a valid URL."),
])
def test_a_bad_url_is_a_field_error(as_alice, support_agent, url, message):
    response = as_alice.post(url_of(support_agent), webhook(url=url))

    assert response.status_code == 400
    assert message in response.content
    assert not AgentConnector.objects.exists()


def test_a_refused_url_with_htmx_comes_back_in_the_region(as_alice, support_agent):
    response = as_alice.post(url_of(support_agent), webhook(url="http://127.0.0.1/"),
                             headers=HTMX)

    assert response.status_code == 400
    assert b"<html" not in response.content
    assert b"loopback, private or link-local" in response.content


def test_a_url_with_markup_is_shown_as_text(as_alice, support_agent):
    AgentConnector.objects.create(agent=support_agent, kind="webhook",
                                  url=f"https://93.184.215.14/?q={SCRIPT}")

    body = as_alice.get(url_of(support_agent)).content.decode()

    assert SCRIPT not in body
    assert "&lt;script&gt;" in body


def test_going_back_to_pull_drops_the_url_and_the_secret(as_alice, support_agent):
    as_alice.post(url_of(support_agent), webhook())

    response = as_alice.post(url_of(support_agent), {"kind": "pull", "url": "", "action": "save"})

    assert response.status_code == 302
    connector = AgentConnector.objects.get()
    assert (connector.kind, connector.url, connector.secret_sealed) == ("pull", "", "")


def test_an_unknown_kind_is_a_form_error(as_alice, support_agent):
    response = as_alice.post(url_of(support_agent), {"kind": "carrier-pigeon", "url": ""})

    assert response.status_code == 400
    assert not AgentConnector.objects.exists()


# --- audited, without the secret ----------------------------------------------------------------


def test_changes_are_audited_without_the_secret(as_alice, support_agent):
    first = shown_secret(as_alice.post(url_of(support_agent), webhook()))
    second = shown_secret(as_alice.post(url_of(support_agent), webhook(action="rotate")))
    as_alice.post(url_of(support_agent), {"kind": "pull", "action": "save"})
    sealed_values = [first, second]

    entries = list(AuditEntry.objects.filter(action="connector.changed").order_by("seq"))

    assert [(e.before, e.after) for e in entries] == [
        (None, {"kind": "webhook", "url": PUBLIC_URL, "has_secret": True,
                "secret_rotated": True}),
        ({"kind": "webhook", "url": PUBLIC_URL, "has_secret": True},
         {"kind": "webhook", "url": PUBLIC_URL, "has_secret": True, "secret_rotated": True}),
        ({"kind": "webhook", "url": PUBLIC_URL, "has_secret": True},
         {"kind": "pull", "url": "", "has_secret": False, "secret_rotated": False}),
    ]
    assert {e.namespace_slug for e in entries} == {"acme"}
    for entry in AuditEntry.objects.all():
        text = str(entry.content())
        assert all(secret not in text for secret in sealed_values)


def test_the_audit_page_never_shows_the_secret(client, alice, ivy, support_agent):
    client.force_login(alice)
    secret = shown_secret(client.post(url_of(support_agent), webhook()))
    client.force_login(ivy)

    page = client.get("/audit/")

    assert page.status_code == 200
    assert b"connector.changed" in page.content
    assert secret.encode() not in page.content


def test_the_admin_never_shows_the_secret(client, alice, django_user_model, support_agent):
    client.force_login(alice)
    secret = shown_secret(client.post(url_of(support_agent), webhook()))
    connector = AgentConnector.objects.get()
    root = django_user_model.objects.create_superuser("root", password="x" * 12)
    client.force_login(root)

    listing = client.get("/admin/interventions/agentconnector/")
    page = client.get(f"/admin/interventions/agentconnector/{connector.pk}/change/")

    assert listing.status_code == 200 and page.status_code == 200
    for response in (listing, page):
        assert secret.encode() not in response.content
        assert connector.secret_sealed.encode() not in response.content
        assert b"secret_sealed" not in response.content
    assert PUBLIC_URL.encode() in page.content
    assert client.get("/admin/interventions/agentconnector/add/").status_code == 403
    response = client.post(f"/admin/interventions/agentconnector/{connector.pk}/change/",
                           {"url": "http://127.0.0.1/"})
    assert response.status_code == 403
    assert AgentConnector.objects.get().url == PUBLIC_URL
