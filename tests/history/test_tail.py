"""The live tail (`GET /runs/<uuid>/tail?seq=N`): events received after a cursor in arrival
order, late events included; 204 when nothing is new, 286 (htmx: stop polling) once closed."""

from __future__ import annotations

import uuid

import pytest

from history.models import Run
from tests.builders import event

pytestmark = pytest.mark.django_db

SECRET = "AKIA" + "ABCDEFGHIJKLMNOP"
SCRIPT = "<script>alert(1)</script>"
HX = {"HX-Request": "true", "HX-Target": "tail-rows"}


@pytest.fixture
def run(ingest, agent_token) -> Run:
    """An open run with events 1-3 and 5 (received as seq 1-4); event 4 is missing."""
    assert ingest(agent_token, [event(1, "workflow.started"), event(2), event(3)]).status_code \
        == 200
    assert ingest(agent_token, [event(5, "activity.scheduled",
                                      attributes={"activity_type": "search"})]).status_code == 200
    return Run.objects.get()



def tail(client, run: Run, seq=None, **kwargs):
    params = {} if seq is None else {"seq": seq}
    return client.get(f"/runs/{run.uuid}/tail", params, headers=HX, **kwargs)


def tailed(response) -> list[int]:
    """The event ids of the rows in a tail answer, in order."""
    body = response.content.decode()
    return [int(part.split('"', 1)[0]) for part in body.split('<tr id="event-')[1:]]


def poller(response) -> str:
    body = response.content.decode()
    return body.split('<div id="tail-poller"', 1)[1].split("</div>", 1)[0]


# --- the happy path, methods, sign-in, access -------------------------------------------------


def test_it_answers_the_events_received_after_the_cursor(as_bob, run):
    response = tail(as_bob, run, seq=2)

    assert response.status_code == 200
    assert tailed(response) == [3, 5]
    assert tailed(tail(as_bob, run, seq=3)) == [5]
    assert "<html" not in response.content.decode()


def test_it_answers_every_event_from_the_start(as_bob, run):
    assert tailed(tail(as_bob, run, seq=0)) == [1, 2, 3, 5]


def test_a_missing_or_bad_cursor_reads_from_the_start(as_bob, run):
    for seq in (None, "", "abc", "-3"):
        assert tailed(tail(as_bob, run, seq=seq)) == [1, 2, 3, 5], seq


def test_it_answers_in_arrival_order_with_a_late_event_that_fills_a_gap(ingest, agent_token,
                                                                       as_bob, run):
    assert ingest(agent_token, [event(6, "activity.started", refs={"scheduled": 5}),
                                event(4)]).status_code == 200
    assert run.events.get(event_id=4).received_seq == 5  # stored in event-id order

    response = tail(as_bob, run, seq=4)

    assert tailed(response) == [4, 6]


def test_a_late_event_alone_is_found_although_its_id_is_below_the_newest(ingest, agent_token,
                                                                        as_bob, run):
    assert ingest(agent_token, [event(4)]).status_code == 200

    response = tail(as_bob, run, seq=4)

    assert tailed(response) == [4]
    assert 'data-seq="5"' in poller(response)


def test_it_answers_204_when_nothing_is_new_on_an_open_run(as_bob, run):
    response = tail(as_bob, run, seq=4)

    assert response.status_code == 204
    assert response.content == b""


def test_it_answers_204_for_a_cursor_beyond_the_end(as_bob, run):
    assert tail(as_bob, run, seq=999).status_code == 204


def test_a_cursor_beyond_any_integer_is_nothing_new(as_bob, run):
    assert tail(as_bob, run, seq="9" * 25).status_code == 204


def test_it_answers_286_when_the_run_has_closed_and_nothing_is_new(ingest, agent_token,
                                                                   as_bob, run):
    assert ingest(agent_token, [event(4), event(6, "workflow.completed")]).status_code == 200

    response = tail(as_bob, run, seq=6)

    assert response.status_code == 286
    assert response.content == b""


def test_the_closing_events_come_with_286_and_a_poller_that_stops(ingest, agent_token,
                                                                  as_bob, run):
    assert ingest(agent_token, [event(4), event(6, "workflow.completed")]).status_code == 200

    response = tail(as_bob, run, seq=4)

    assert response.status_code == 286
    assert tailed(response) == [4, 6]
    assert "hx-get" not in poller(response)
    assert 'data-seq="6"' in poller(response)


def test_a_closed_run_with_a_gap_keeps_polling_for_the_late_event(ingest, agent_token,
                                                                  as_bob, run):
    assert ingest(agent_token, [event(6, "workflow.completed")]).status_code == 200

    assert tail(as_bob, run, seq=5).status_code == 204
    assert ingest(agent_token, [event(4)]).status_code == 200
    late = tail(as_bob, run, seq=5)

    assert late.status_code == 286
    assert tailed(late) == [4]


def test_the_answer_carries_the_new_cursor_in_the_poller(as_bob, run):
    response = tail(as_bob, run, seq=1)

    swap = poller(response)
    assert 'hx-swap-oob="true"' in swap
    assert f'hx-get="/runs/{run.uuid}/tail?seq=4"' in swap
    assert 'hx-trigger="every 2s"' in swap
    assert 'data-seq="4"' in swap


def test_the_answer_refreshes_the_header(ingest, agent_token, as_bob, run):
    assert ingest(agent_token, [event(4)]).status_code == 200

    body = tail(as_bob, run, seq=4).content.decode()

    header = body.split('<header id="run-header"', 1)[1].split("</header>", 1)[0]
    assert 'hx-swap-oob="true"' in header
    assert "<dt>Events</dt><dd>5</dd>" in header
    assert "<dt>Gaps</dt><dd>none</dd>" in header


def test_the_answer_shows_a_gap_in_the_header(as_bob, run):
    body = tail(as_bob, run, seq=3).content.decode()

    assert '<span class="flag">missing 4</span>' in body


def test_it_answers_at_most_200_events_and_keeps_polling(ingest, agent_token, as_bob, run):
    more = [event(4), *[event(n) for n in range(6, 260)], event(260, "workflow.completed")]
    assert ingest(agent_token, more).status_code == 200

    first = tail(as_bob, run, seq=4)

    assert first.status_code == 200
    assert tailed(first) == [4, *range(6, 205)]
    assert 'hx-get="' in poller(first)
    second = tail(as_bob, run, seq=204)
    assert second.status_code == 286
    assert tailed(second) == list(range(205, 261))


def test_it_refuses_post(as_bob, run):
    assert as_bob.post(f"/runs/{run.uuid}/tail?seq=0").status_code == 405


def test_an_anonymous_visitor_is_sent_to_sign_in(client, run):
    response = tail(client, run, seq=0)

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_an_outsider_gets_404(client, charlie, run):
    client.force_login(charlie)

    for seq in (0, 4):
        response = tail(client, run, seq=seq)
        assert response.status_code == 404
        assert b"decision.made" not in response.content


def test_a_malformed_uuid_is_404(as_bob, run):
    assert as_bob.get("/runs/not-a-uuid/tail?seq=0", headers=HX).status_code == 404


def test_an_unknown_uuid_is_404(as_bob, run):
    assert as_bob.get(f"/runs/{uuid.uuid4()}/tail?seq=0", headers=HX).status_code == 404


def test_without_htmx_it_still_answers_only_rows(as_bob, run):
    response = as_bob.get(f"/runs/{run.uuid}/tail", {"seq": 0})

    assert response.status_code == 200
    assert b"<html" not in response.content


# --- masking and escaping -----------------------------------------------------------------


def test_a_viewer_never_sees_a_secret_in_the_tail(ingest, agent_token, as_bob, ivy, run):
    assert ingest(agent_token, [event(6, "decision.made", identity="worker",
                                      attributes={"note": f"key {SECRET}"})]).status_code == 200

    body = tail(as_bob, run, seq=0).content.decode()

    assert SECRET not in body
    assert "[REDACTED:aws_access_key_id]" in body
    assert 'title="secret found; masked">secret</span>' in body


def test_the_tail_is_masked_for_an_investigator_too(ingest, agent_token, client, ivy, run):
    assert ingest(agent_token, [event(6, attributes={"note": f"key {SECRET}"})]).status_code \
        == 200
    client.force_login(ivy)

    assert SECRET not in tail(client, run, seq=4).content.decode()


def test_agent_supplied_markup_is_escaped(ingest, agent_token, as_bob, run):
    assert ingest(agent_token, [event(6, identity=SCRIPT,
                                      attributes={SCRIPT: SCRIPT})]).status_code == 200

    body = tail(as_bob, run, seq=4).content.decode()

    assert SCRIPT not in body
    assert "&lt;script&gt;" in body
