"""One event's detail (`GET /runs/<uuid>/events/<event_id>`): attributes, decoded payloads,
secret findings, references both ways, masking, htmx, access."""

from __future__ import annotations

import base64
import html
import uuid

import orjson
import pytest

from history.models import Run
from tests.builders import event

pytestmark = pytest.mark.django_db

SECRET = "AKIA" + "ABCDEFGHIJKLMNOP"
MASK = "[REDACTED:aws_access_key_id]"
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def payload(value) -> dict:
    """A Temporal-style payload of a JSON value."""
    return {"metadata": {"encoding": b64(b"json/plain")}, "data": b64(orjson.dumps(value))}


@pytest.fixture
def run(ingest, agent_token) -> Run:
    events = [
        event(1, "workflow.started", attributes={"labels": {"team": "support"}}),
        event(2, "activity.scheduled",
              attributes={"activity_type": "search_kb", "kind": "tool",
                          "input": {"payloads": [payload({"query": "refund policy", "n": 3})]}}),
        event(3, "activity.started", refs={"scheduled": 2}, identity="worker-a",
              attributes={"attempt": 1}),
        event(4, "activity.completed", refs={"scheduled": 2, "started": 3},
              attributes={"result": payload({"answer": "30 days"}),
                          "aws_access_key_id": SECRET, "note": "all good"}),
        event(5, "activity.scheduled", attributes={"activity_type": "leaky",
                                                    "input": payload({"key": SECRET})}),
        event(6, "decision.made", identity=IMG, attributes={SCRIPT: IMG, "text": SCRIPT}),
    ]
    assert ingest(agent_token, events).status_code == 200
    return Run.objects.get(workflow_id="wf-1")




def url(run: Run, event_id) -> str:
    return f"/runs/{run.uuid}/events/{event_id}"


def text(response) -> str:
    assert response.status_code == 200, response.content[:2000]
    return response.content.decode()


def pres(body: str) -> list[str]:
    """The unescaped contents of the <pre> blocks, in order."""
    return [
        html.unescape(part.split(">", 1)[1].split("</pre>", 1)[0])
        for part in body.split("<pre class=\"json\"")[1:]
    ]


# --- the happy path, methods, sign-in, access -------------------------------------------------


def test_it_shows_an_event_as_a_page(as_bob, run):
    body = text(as_bob.get(url(run, 3)))

    assert "<html" in body
    assert "#3 activity.started" in body
    assert "worker-a" in body
    assert "#3 in arrival order" in body
    assert run.events.get(event_id=3).chain_hash in body
    assert f'href="/runs/{run.uuid}/?event=3#event-3"' in body


def test_it_shows_the_attributes_pretty_printed(as_bob, run):
    attributes = pres(text(as_bob.get(url(run, 2))))[0]

    assert attributes.startswith('{\n  "activity_type": "search_kb",\n')
    assert orjson.loads(attributes)["kind"] == "tool"


def test_via_htmx_it_answers_only_the_detail(as_bob, run):
    response = as_bob.get(url(run, 3), headers={"HX-Request": "true",
                                                 "HX-Target": "event-panel"})

    body = text(response)
    assert "<html" not in body
    assert body.lstrip().startswith('<article id="event-detail"')


def test_it_refuses_post(as_bob, run):
    assert as_bob.post(url(run, 3)).status_code == 405


def test_an_anonymous_visitor_is_sent_to_sign_in(client, run):
    response = client.get(url(run, 3))

    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next=/runs/{run.uuid}/events/3"


def test_an_outsider_gets_404(client, charlie, run):
    client.force_login(charlie)

    for headers in ({}, {"HX-Request": "true", "HX-Target": "event-panel"}):
        response = client.get(url(run, 4), headers=headers)
        assert response.status_code == 404
        assert b"activity.completed" not in response.content


def test_an_outsider_gets_the_same_404_for_a_real_and_an_unknown_event(client, charlie, run):
    client.force_login(charlie)

    assert client.get(url(run, 4)).status_code == client.get(url(run, 999)).status_code == 404


def test_a_malformed_uuid_is_404(as_bob, run):
    assert as_bob.get("/runs/not-a-uuid/events/3").status_code == 404


def test_an_unknown_uuid_is_404(as_bob, run):
    assert as_bob.get(f"/runs/{uuid.uuid4()}/events/3").status_code == 404


def test_an_unknown_event_id_is_404(as_bob, run):
    assert as_bob.get(url(run, 99)).status_code == 404
    assert as_bob.get(url(run, 0)).status_code == 404
    assert as_bob.get(url(run, "9" * 25)).status_code == 404


def test_an_event_id_that_is_not_a_number_is_404(as_bob, run):
    assert as_bob.get(url(run, "three")).status_code == 404
    assert as_bob.get(url(run, "-3")).status_code == 404


def test_an_event_of_another_run_is_not_found_through_this_run(ingest, agent_token, as_bob,
                                                                run):
    assert ingest(agent_token, [event(1, "workflow.started", run_id="run-2"),
                                event(50, "decision.made", run_id="run-2")]).status_code == 200

    assert as_bob.get(url(run, 50)).status_code == 404


# --- decoded payloads -------------------------------------------------------------------------


def test_it_decodes_a_temporal_style_payload(as_bob, run):
    body = text(as_bob.get(url(run, 4)))

    assert "Decoded payload at <code>/result</code>" in body
    decoded = pres(body)[1]
    assert orjson.loads(decoded) == {"answer": "30 days"}


def test_it_decodes_a_payload_inside_a_list(as_bob, run):
    body = text(as_bob.get(url(run, 2)))

    assert "Decoded payload at <code>/input/payloads/0</code>" in body
    assert orjson.loads(pres(body)[1]) == {"query": "refund policy", "n": 3}


def test_an_event_without_payloads_shows_no_decoded_section(as_bob, run):
    assert "Decoded payload" not in text(as_bob.get(url(run, 3)))


def test_a_payload_that_is_plain_text_is_shown_as_text(ingest, agent_token, as_bob):
    plain = {"metadata": {"encoding": b64(b"text/plain")}, "data": b64(b"hello there")}
    assert ingest(agent_token, [event(1, "workflow.started", workflow_id="wf-p"),
                                event(2, "marker.recorded", workflow_id="wf-p",
                                      attributes={"details": plain})]).status_code == 200
    run = Run.objects.get(workflow_id="wf-p")

    body = text(as_bob.get(url(run, 2)))

    assert pres(body)[1] == '"hello there"'


def test_a_decoded_payload_with_markup_is_escaped(ingest, agent_token, as_bob):
    assert ingest(agent_token, [event(1, "workflow.started", workflow_id="wf-m"),
                                event(2, "marker.recorded", workflow_id="wf-m",
                                      attributes={"details": payload({"x": SCRIPT})})
                                ]).status_code == 200
    run = Run.objects.get(workflow_id="wf-m")

    body = text(as_bob.get(url(run, 2)))

    assert SCRIPT not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


# --- secrets --------------------------------------------------------------------------------


def test_a_viewer_sees_the_findings_but_not_the_value(as_bob, run):
    body = text(as_bob.get(url(run, 4)))

    assert "Secrets found</strong> (masked)" in body
    assert "aws_access_key_id at <code>/aws_access_key_id</code>" in body
    assert SECRET not in body
    assert MASK in body


def test_a_viewer_gets_no_raw_link_and_asking_raw_changes_nothing(as_bob, run):
    masked = text(as_bob.get(url(run, 4)))
    asked = text(as_bob.get(url(run, 4), {"raw": "1"}))

    assert "show raw" not in masked
    assert SECRET not in asked
    assert "(raw)" not in asked


def test_a_secret_inside_an_encoded_payload_is_not_decoded_for_a_viewer(as_bob, run):
    body = text(as_bob.get(url(run, 5)))

    assert SECRET not in body
    assert b64(orjson.dumps({"key": SECRET})) not in body
    assert "Secrets found" in body


def test_an_investigator_sees_masked_until_asking_raw(as_ivy, run):
    masked = text(as_ivy.get(url(run, 4)))
    raw = text(as_ivy.get(url(run, 4), {"raw": "1"}))

    assert SECRET not in masked
    assert f'href="/runs/{run.uuid}/events/4?raw=1">show raw</a>' in masked
    assert SECRET in raw
    assert "Attributes (raw)" in raw
    assert "Secrets found</strong> (shown raw)" in raw
    assert "show masked" in raw


def test_an_investigator_asking_raw_sees_the_decoded_secret(as_ivy, run):
    raw = text(as_ivy.get(url(run, 5), {"raw": "1"}))

    assert orjson.loads(pres(raw)[1]) == {"key": SECRET}


def test_an_admin_may_see_raw(client, alice, run):
    client.force_login(alice)

    assert SECRET in text(client.get(url(run, 4), {"raw": "1"}))


# --- references -------------------------------------------------------------------------------


def test_it_links_the_events_it_refers_to(as_bob, run):
    body = text(as_bob.get(url(run, 4)))

    refers = body.split("<dt>Refers to</dt>", 1)[1].split("</dd>", 1)[0]
    assert f'href="/runs/{run.uuid}/events/2"' in refers
    assert f'href="/runs/{run.uuid}/events/3"' in refers
    assert ">scheduled #2</a>" in refers
    assert ">started #3</a>" in refers


def test_it_links_the_events_that_refer_to_it(as_bob, run):
    body = text(as_bob.get(url(run, 2)))

    referred = body.split("<dt>Referred to by</dt>", 1)[1].split("</dd>", 1)[0]
    assert ">activity.started #3</a>" in referred
    assert ">activity.completed #4</a>" in referred
    # On its own page the links are plain links: there is no side panel to load them into.
    assert "hx-get" not in referred


def test_in_the_side_panel_its_links_load_in_the_panel(as_bob, run):
    body = text(as_bob.get(url(run, 2), headers={"HX-Request": "true"}))

    referred = body.split("<dt>Referred to by</dt>", 1)[1].split("</dd>", 1)[0]
    assert f'hx-get="/runs/{run.uuid}/events/4" hx-target="#event-panel"' in referred


def test_an_event_with_no_references_lists_none(as_bob, run):
    body = text(as_bob.get(url(run, 6)))

    assert "Refers to" not in body
    assert "Referred to by" not in body


# --- escaping -------------------------------------------------------------------------------


def test_agent_supplied_markup_is_escaped(as_bob, run):
    for headers in ({}, {"HX-Request": "true"}):
        body = text(as_bob.get(url(run, 6), headers=headers))
        assert SCRIPT not in body
        assert "<img src=x" not in body
        assert "&lt;img src=x onerror=alert(1)&gt;" in body
