"""The run page's "verify now": re-checks one run's chain on demand."""

from __future__ import annotations

import pytest

from history.models import Event, Run
from tests.builders import history


@pytest.fixture
def run(ingest, agent_token):
    assert ingest(agent_token, history(12)).status_code == 200
    return Run.objects.get()


def test_it_says_a_clean_chain_is_verified(client, bob, run):
    client.force_login(bob)
    response = client.get(f"/runs/{run.uuid}/verify", headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert b"verified" in response.content
    assert b"<html" not in response.content


def test_it_names_the_event_that_was_changed(client, bob, run):
    Event.objects.filter(run=run, event_id=7).update(attributes='{"n":0}')
    client.force_login(bob)
    response = client.get(f"/runs/{run.uuid}/verify")
    assert response.status_code == 200
    assert b"chain broken" in response.content
    assert b"event 7: attributes do not match their digest" in response.content


def test_an_outsider_gets_404(client, charlie, run):
    client.force_login(charlie)
    assert client.get(f"/runs/{run.uuid}/verify").status_code == 404


def test_anonymous_is_sent_to_sign_in(client, run):
    response = client.get(f"/runs/{run.uuid}/verify")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_it_refuses_post(client, bob, run):
    client.force_login(bob)
    assert client.post(f"/runs/{run.uuid}/verify").status_code == 405
