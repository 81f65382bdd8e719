"""Saved views of the run list: save (`POST /views/`), open by URL (`GET /views/<uuid>/`),
delete (`POST /views/<uuid>/delete`)."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from history.models import SavedView

pytestmark = pytest.mark.django_db

QUERY = "status=failed&agent=support-bot"



@pytest.fixture
def bobs_view(bob) -> SavedView:
    return SavedView.objects.create(owner=bob, name="Failures", query=QUERY)


def saved_names(client) -> list[str]:
    return [view.name for view in client.get("/").context["saved_views"]]


# --- save ---------------------------------------------------------------------------------------


def test_saving_a_view_stores_it_and_shows_its_runs(as_bob, bob):
    response = as_bob.post("/views/", {"name": "Failures", "query": QUERY})

    assert response.status_code == 302
    assert response["Location"] == f"/?{QUERY}"
    view = SavedView.objects.get()
    assert (view.owner, view.name, view.query) == (bob, "Failures", QUERY)


def test_a_saved_view_is_listed_for_its_owner(as_bob):
    as_bob.post("/views/", {"name": "Failures", "query": QUERY})

    response = as_bob.get("/")

    view = SavedView.objects.get()
    assert saved_names(as_bob) == ["Failures"]
    assert f'<a href="/views/{view.uuid}/">Failures</a>'.encode() in response.content
    assert f'action="/views/{view.uuid}/delete"'.encode() in response.content


def test_a_saved_view_is_not_listed_for_anyone_else(client, bobs_view, alice, charlie):
    for user in (alice, charlie):
        client.force_login(user)
        response = client.get("/")
        assert saved_names(client) == []
        assert b"Failures" not in response.content
        assert str(bobs_view.uuid).encode() not in response.content


def test_saving_with_the_same_name_replaces_the_query(as_bob, bobs_view):
    as_bob.post("/views/", {"name": "Failures", "query": "status=timed_out"})

    bobs_view.refresh_from_db()
    assert SavedView.objects.count() == 1
    assert bobs_view.query == "status=timed_out"


def test_two_users_may_use_the_same_name(client, bobs_view, alice):
    client.force_login(alice)

    assert client.post("/views/", {"name": "Failures", "query": ""}).status_code == 302
    assert SavedView.objects.filter(name="Failures").count() == 2


def test_an_empty_query_saves_the_unfiltered_list(as_bob):
    response = as_bob.post("/views/", {"name": "Everything", "query": ""})

    assert response["Location"] == "/"


def test_the_save_form_carries_the_current_query_without_the_cursor(as_bob):
    response = as_bob.get("/", {"status": "failed", "q": "order", "cursor": ""})

    assert b'name="query" value="status=failed&amp;q=order"' in response.content


def test_a_view_needs_a_name(as_bob):
    response = as_bob.post("/views/", {"name": "   ", "query": QUERY})

    assert response.status_code == 400
    assert b"name" in response.content
    assert not SavedView.objects.exists()


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("status=bogus", b"status"),
        ("started_after=yesterday", b"started_after"),
        ("label=nokey", b"label"),
        ("sort=sideways", b"sort"),
    ],
)
def test_a_bad_query_is_refused_with_400(as_bob, query, named):
    response = as_bob.post("/views/", {"name": "Broken", "query": query})

    assert response.status_code == 400
    assert named in response.content
    assert not SavedView.objects.exists()


def test_a_bad_query_is_not_reflected_as_markup(as_bob):
    response = as_bob.post("/views/", {"name": "x", "query": "status=<script>alert(1)</script>"})

    assert response.status_code == 400
    # The message names the bad value as plain text, which no browser runs as markup.
    assert response["Content-Type"].startswith("text/plain")


def test_line_breaks_in_a_query_cannot_split_the_redirect(as_bob):
    response = as_bob.post("/views/", {"name": "Odd", "query": "q=abc\r\nX-Evil: yes"})

    assert response.status_code == 302
    assert "\n" not in response["Location"]
    assert "X-Evil" not in response.headers
    view = SavedView.objects.get()
    opened = as_bob.get(f"/views/{view.uuid}/")
    assert opened.status_code == 302
    assert "\n" not in opened["Location"]
    assert "X-Evil" not in opened.headers


def test_saving_refuses_get(as_bob):
    assert as_bob.get("/views/").status_code == 405


def test_an_anonymous_visitor_cannot_save(client):
    response = client.post("/views/", {"name": "x", "query": QUERY})

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert not SavedView.objects.exists()


def test_saving_needs_the_csrf_token(bob):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(bob)

    refused = browser.post("/views/", {"name": "Failures", "query": QUERY})
    assert refused.status_code == 403
    assert not SavedView.objects.exists()

    token = browser.get("/").context["csrf_token"]
    accepted = browser.post("/views/", {"name": "Failures", "query": QUERY,
                                        "csrfmiddlewaretoken": str(token)})
    assert accepted.status_code == 302
    assert SavedView.objects.count() == 1


def test_deleting_needs_the_csrf_token(bob, bobs_view):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(bob)

    assert browser.post(f"/views/{bobs_view.uuid}/delete").status_code == 403
    assert SavedView.objects.filter(pk=bobs_view.pk).exists()


# --- open ---------------------------------------------------------------------------------------


def test_opening_a_view_redirects_to_its_filters(as_bob, bobs_view):
    response = as_bob.get(f"/views/{bobs_view.uuid}/")

    assert response.status_code == 302
    assert response["Location"] == f"/?{QUERY}"


def test_anyone_signed_in_may_open_a_shared_view(client, bobs_view, alice, charlie):
    for user in (alice, charlie):
        client.force_login(user)
        response = client.get(f"/views/{bobs_view.uuid}/")
        assert response.status_code == 302
        assert response["Location"] == f"/?{QUERY}"


def test_an_opened_view_shows_only_what_the_user_may_see(ingest, agent_token, client, charlie,
                                                         bob):
    from tests.builders import event

    assert ingest(agent_token, [event(1, "workflow.started", workflow_id="acme-order"),
                                event(2, "workflow.failed", workflow_id="acme-order")]
                  ).status_code == 200
    view = SavedView.objects.create(owner=bob, name="Failures", query="status=failed")
    client.force_login(charlie)

    response = client.get(f"/views/{view.uuid}/", follow=True)

    assert response.status_code == 200
    assert b"acme-order" not in response.content
    assert b"No runs match." in response.content


def test_a_view_with_no_query_opens_the_plain_list(as_bob, bob):
    view = SavedView.objects.create(owner=bob, name="All", query="")

    assert as_bob.get(f"/views/{view.uuid}/")["Location"] == "/"


def test_an_anonymous_visitor_is_sent_to_sign_in_before_opening(client, bobs_view):
    response = client.get(f"/views/{bobs_view.uuid}/")

    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next=/views/{bobs_view.uuid}/"


def test_opening_an_unknown_view_is_404(as_bob):
    assert as_bob.get(f"/views/{uuid.uuid4()}/").status_code == 404


def test_opening_a_malformed_view_id_is_404(as_bob):
    assert as_bob.get("/views/not-a-uuid/").status_code == 404


def test_opening_refuses_post(as_bob, bobs_view):
    assert as_bob.post(f"/views/{bobs_view.uuid}/").status_code == 405


# --- delete -------------------------------------------------------------------------------------


def test_the_owner_deletes_a_view(as_bob, bobs_view):
    response = as_bob.post(f"/views/{bobs_view.uuid}/delete")

    assert response.status_code == 302
    assert response["Location"] == "/"
    assert not SavedView.objects.exists()


def test_nobody_else_may_delete_a_view(client, bobs_view, alice, charlie):
    for user in (alice, charlie):
        client.force_login(user)
        assert client.post(f"/views/{bobs_view.uuid}/delete").status_code == 404
    assert SavedView.objects.filter(pk=bobs_view.pk).exists()


def test_deleting_an_unknown_or_malformed_view_is_404(as_bob):
    assert as_bob.post(f"/views/{uuid.uuid4()}/delete").status_code == 404
    assert as_bob.post("/views/not-a-uuid/delete").status_code == 404


def test_deleting_refuses_get(as_bob, bobs_view):
    assert as_bob.get(f"/views/{bobs_view.uuid}/delete").status_code == 405
    assert SavedView.objects.exists()


def test_an_anonymous_visitor_cannot_delete(client, bobs_view):
    response = client.post(f"/views/{bobs_view.uuid}/delete")

    assert response.status_code == 302
    assert SavedView.objects.exists()
