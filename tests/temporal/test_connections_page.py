"""The namespace admins' Temporal connection pages (temporal/connection_views.py) and the
connection service (temporal/connections.py)."""

from __future__ import annotations

import pytest
from django.test import Client

from access.encryption import unseal
from audit.models import AuditEntry
from temporal.connections import save_connection
from temporal.models import TemporalConnection

PAGE = "/namespaces/acme/temporal/"
FORM = {"name": "prod", "address": "temporal.internal:7233", "temporal_namespace": "payments",
        "approval_signal": "flightdeck.approval", "enabled": "on",
        "api_key": "tk-super-secret-value"}


def test_an_admin_adds_a_connection_with_its_own_agent_and_a_sealed_api_key(as_alice):
    response = as_alice.post(PAGE, FORM)
    assert response.status_code == 302
    connection = TemporalConnection.objects.get(name="prod")
    assert connection.agent.name == "temporal-prod" and connection.agent.connector.kind == (
        "temporal"
    )
    assert connection.api_key_sealed and "tk-super-secret" not in connection.api_key_sealed
    assert unseal(connection.api_key_sealed) == "tk-super-secret-value"
    listing = as_alice.get(PAGE).content.decode()
    assert "temporal.internal:7233" in listing and "tk-super-secret" not in listing
    edit = as_alice.get(f"{PAGE}connections/prod/").content.decode()
    assert "set, stored encrypted" in edit and "tk-super-secret" not in edit
    audit = AuditEntry.objects.filter(action="temporal.connection_changed").get()
    assert "tk-super-secret" not in str(audit.after) and audit.after["api_key_set"] is True


def test_an_empty_key_keeps_the_stored_one_and_clearing_removes_it(as_alice):
    as_alice.post(PAGE, FORM)
    edit = f"{PAGE}connections/prod/"
    change = {**FORM, "api_key": "", "address": "temporal.internal:7234"}
    assert as_alice.post(edit, change).status_code == 302
    connection = TemporalConnection.objects.get(name="prod")
    assert connection.address == "temporal.internal:7234"
    assert unseal(connection.api_key_sealed) == "tk-super-secret-value"
    as_alice.post(edit, {**change, "clear_api_key": "on"})
    connection.refresh_from_db()
    assert connection.api_key_sealed == ""


def test_a_bad_address_and_a_taken_name_are_form_errors(as_alice):
    response = as_alice.post(PAGE, {**FORM, "address": "no port here"})
    assert response.status_code == 400 and "Give host:port" in response.content.decode()
    as_alice.post(PAGE, FORM)
    again = as_alice.post(PAGE, FORM)
    assert again.status_code == 400 and "has a connection prod already" in (
        again.content.decode()
    )


def test_only_admins_manage_connections(as_ivy, client, charlie):
    assert as_ivy.get(PAGE).status_code == 403
    assert as_ivy.post(PAGE, FORM).status_code == 403
    client.force_login(charlie)
    assert client.get(PAGE).status_code == 404
    assert not TemporalConnection.objects.exists()


def test_the_pages_need_a_login_and_the_form_a_csrf_token(client, alice):
    assert client.get(PAGE).status_code == 302
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    assert browser.post(PAGE, FORM).status_code == 403


def test_an_unknown_connection_is_404(as_alice):
    assert as_alice.get(f"{PAGE}connections/nope/").status_code == 404


def test_the_agent_connector_page_does_not_offer_temporal(as_alice, support_agent):
    page = as_alice.get(f"/namespaces/acme/agents/{support_agent.pk}/connector/")
    assert page.status_code == 200 and 'value="temporal"' not in page.content.decode()


# --- where a connection may point (SSRF) -------------------------------------------------------


@pytest.mark.parametrize("address", ["127.0.0.1:6379", "localhost:5432", "[::1]:7233",
                                     "169.254.169.254:80", "10.1.2.3:7233", "0.0.0.0:7233"])
def test_a_loopback_private_or_metadata_address_is_refused_naming_the_field(
    as_alice, settings, address
):
    settings.TEMPORAL_ALLOWED_NETWORKS = []
    response = as_alice.post(PAGE, {**FORM, "address": address})
    assert response.status_code == 400
    assert "TEMPORAL_ALLOWED_NETWORKS" in response.context["form"].errors["address"][0]
    assert not TemporalConnection.objects.exists()


def test_an_allowed_private_network_is_accepted(as_alice, settings):
    settings.TEMPORAL_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert as_alice.post(PAGE, {**FORM, "address": "10.1.2.3:7233"}).status_code == 302


def test_a_port_out_of_range_is_a_form_error(as_alice):
    response = as_alice.post(PAGE, {**FORM, "address": "temporal.internal:70000"})
    assert response.status_code == 400 and "port from 1 to 65535" in response.content.decode()


def test_a_connection_to_a_refused_address_is_not_attempted(acme, alice, settings):
    """Saved while allowed (or through the service), then refused when connecting: the
    follower never opens the connection and says why on the page."""
    from temporal.follow import follow_connection

    settings.TEMPORAL_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    connection = save_connection(acme, {"name": "local", "address": "127.0.0.1:1"},
                                 actor=alice)
    settings.TEMPORAL_ALLOWED_NETWORKS = []
    follow_connection(connection.pk, seconds=1)
    connection.refresh_from_db()
    assert "RefusedAddress" in connection.last_error
    assert "TEMPORAL_ALLOWED_NETWORKS" in connection.last_error


def test_the_list_costs_the_same_queries_for_one_connection_or_many(as_alice, acme, alice):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert as_alice.get(PAGE).status_code == 200
        return len(captured)

    save_connection(acme, {"name": "c0", "address": "temporal.example.com:7233"}, actor=alice)
    one = queries()
    for number in range(1, 6):
        save_connection(acme, {"name": f"c{number}", "address": "temporal.example.com:7233"},
                        actor=alice)
    assert queries() == one


def test_an_empty_post_is_a_400_naming_the_required_fields(as_alice):
    response = as_alice.post(PAGE, {})
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert {"name", "address", "temporal_namespace"} <= set(errors)
    assert "This field is required" in response.content.decode()
    assert not TemporalConnection.objects.exists()


def test_an_empty_post_to_a_connection_is_a_400_and_changes_nothing(as_alice):
    as_alice.post(PAGE, FORM)
    response = as_alice.post(f"{PAGE}connections/prod/", {})
    assert response.status_code == 400
    assert {"address", "temporal_namespace"} <= set(response.context["form"].errors)
    connection = TemporalConnection.objects.get(name="prod")
    assert (connection.address, connection.enabled) == ("temporal.internal:7233", True)
