"""The run page's commands (`/runs/<uuid>/commands/`): sending each verb from the one form,
confirming destructive ones, refusals next to their field, the polled list of commands and
pending approvals, access, htmx and plain requests, escaping, and the marks on the timeline."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from access.models import Membership
from history.models import Run
from interventions.models import ApprovalRequest, Command
from tests.builders import event

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
SCRIPT = "<script>alert(1)</script>"


@pytest.fixture
def olga(django_user_model, acme):
    """Operator in acme: sends commands, administers nothing."""
    user = django_user_model.objects.create_user("olga", password="correct horse battery")
    Membership.objects.create(user=user, namespace=acme, role="operator")
    return user


@pytest.fixture
def as_olga(client, olga):
    client.force_login(olga)
    return client


def _run(ingest, token, *types) -> Run:
    events = [event(1, "workflow.started"), event(2)]
    events += [event(3 + n, kind) for n, kind in enumerate(types)]
    response = ingest(token, events)
    assert response.status_code == 200, response.content
    return Run.objects.get(workflow_id="wf-1")


@pytest.fixture
def running(ingest, agent_token) -> Run:
    return _run(ingest, agent_token)


@pytest.fixture
def paused(ingest, agent_token) -> Run:
    return _run(ingest, agent_token, "workflow.paused")


@pytest.fixture
def closed(ingest, agent_token) -> Run:
    return _run(ingest, agent_token, "workflow.completed")


def url(run: Run) -> str:
    return f"/runs/{run.uuid}/commands/"


def send(client, run: Run, kind: str, *, htmx=False, **fields):
    data = {"kind": kind, "command_id": str(uuid.uuid4()), **fields}
    return client.post(url(run), data, headers=HTMX if htmx else {})


def text(response) -> str:
    return response.content.decode()


def verbs(body: str) -> list[str]:
    return re.findall(r'<button type="submit" name="kind" value="(\w+)"', body)


# --- sending each verb ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "kind", "fields"),
    [
        ("running", "pause", {}),
        ("paused", "resume", {}),
        ("running", "cancel", {"reason": "wrong customer", "confirmed": "1"}),
        ("running", "terminate", {"reason": "runaway loop", "confirmed": "1"}),
        ("running", "signal", {"signal_name": "refresh", "payload": '{"n": 1}'}),
    ],
)
def test_an_operator_sends_each_verb_the_run_allows(as_olga, olga, request, state, kind, fields):
    run = request.getfixturevalue(state)

    response = send(as_olga, run, kind, **fields)

    assert response.status_code == 302
    assert response["Location"] == f"/runs/{run.uuid}/#commands"
    command = Command.objects.get()
    assert (command.run, command.kind, command.requested_by, command.state) == (
        run, kind, olga, "queued"
    )
    assert command.reason == fields.get("reason", "")
    if kind == "signal":
        assert (command.signal_name, command.payload) == ("refresh", {"n": 1})
    page = text(as_olga.get(response["Location"]))
    assert f"{command.label.capitalize()} requested: queued." in page  # after the redirect
    assert f'id="command-{command.pk}"' in page


def test_an_admin_pauses_through_htmx_and_gets_the_form_and_the_list_back(as_alice, running):
    response = send(as_alice, running, "pause", htmx=True)

    assert response.status_code == 201
    body = text(response)
    assert "<html" not in body
    assert 'id="command-controls"' in body
    assert "Pause requested: queued." in body
    command = Command.objects.get()
    # The list comes out of band, polling now that a command is open.
    list_part = body.split('id="command-list"', 1)[1]
    assert 'hx-swap-oob="true"' in list_part.split(">", 1)[0]
    assert 'hx-trigger="every 2s"' in list_part.split(">", 1)[0]
    assert f'id="command-{command.pk}"' in list_part
    assert 'data-state="queued"' in list_part
    # A fresh idempotency key for the next command.
    assert str(command.pk) not in body.split('id="command-list"', 1)[0]


def test_the_signal_inputs_belong_to_the_signal_button_only(as_olga, running):
    response = send(as_olga, running, "pause", signal_name="x" * 300, payload="{oops")

    assert response.status_code == 302
    command = Command.objects.get()
    assert (command.kind, command.signal_name, command.payload) == ("pause", "", {})


# --- methods, sign-in, access, bad ids ----------------------------------------------------------


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_it_refuses_other_methods(as_olga, running, method):
    assert getattr(as_olga, method)(url(running)).status_code == 405


def test_an_anonymous_visitor_is_sent_to_sign_in(client, running):
    for response in (client.get(url(running)), send(client, running, "pause")):
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")
    assert not Command.objects.exists()


@pytest.mark.parametrize("htmx", [False, True])
def test_an_outsider_gets_404_and_nothing_of_the_run(as_charlie, running, htmx):
    headers = HTMX if htmx else {}
    for response in (
        as_charlie.get(url(running), headers=headers),
        as_charlie.get(url(running), headers={**headers, "HX-Target": "command-controls"}),
        send(as_charlie, running, "pause", htmx=htmx),
    ):
        assert response.status_code == 404
        assert b"wf-1" not in response.content
    assert not Command.objects.exists()


def test_a_viewer_sees_the_commands_but_no_buttons(as_bob, running, alice):
    send_as(alice, running, "pause")

    for body in (text(as_bob.get(f"/runs/{running.uuid}/")), text(as_bob.get(url(running)))):
        assert verbs(body) == []
        assert "needs the operator role" in body
        assert 'data-state="queued"' in body
    controls = as_bob.get(url(running), headers={**HTMX, "HX-Target": "command-controls"})
    assert controls.status_code == 200
    assert verbs(text(controls)) == []


@pytest.mark.parametrize("htmx", [False, True])
def test_a_viewer_cannot_send_a_command(as_bob, running, htmx):
    response = send(as_bob, running, "pause", htmx=htmx)

    assert response.status_code == 403
    assert not Command.objects.exists()


@pytest.mark.parametrize("run_id", ["not-a-uuid", str(uuid.uuid4())])
def test_a_bad_run_id_is_404(as_olga, running, run_id):
    assert as_olga.get(f"/runs/{run_id}/commands/").status_code == 404
    assert as_olga.get(f"/runs/{run_id}/commands/", headers=HTMX).status_code == 404
    assert as_olga.post(f"/runs/{run_id}/commands/", {"kind": "pause"}).status_code == 404


# --- the page, the controls and the list, plain and htmx -----------------------------------------


def test_the_run_page_offers_the_verbs_of_a_running_run(as_olga, running):
    body = text(as_olga.get(f"/runs/{running.uuid}/"))

    assert 'id="commands"' in body
    assert verbs(body) == ["pause", "cancel", "terminate", "signal"]
    assert re.search(r'name="command_id" value="[0-9a-f-]{36}"', body)
    assert "No commands sent to this run." in body


def test_a_paused_run_offers_resume_instead_of_pause(as_olga, paused):
    assert verbs(text(as_olga.get(f"/runs/{paused.uuid}/"))) == [
        "resume", "cancel", "terminate", "signal"
    ]


def test_without_htmx_the_commands_are_a_page_of_their_own(as_olga, running):
    send_as(None, running, "pause", client=as_olga)

    body = text(as_olga.get(url(running)))

    assert "<html" in body
    assert 'id="run-header"' in body
    assert 'id="command-controls"' in body
    assert 'data-state="queued"' in body


def test_with_htmx_the_list_comes_alone(as_olga, running):
    send_as(None, running, "pause", client=as_olga)

    response = as_olga.get(url(running), headers=HTMX)

    assert response.status_code == 200
    body = text(response)
    assert "<html" not in body and 'id="command-controls"' not in body
    assert body.strip().startswith('<div id="command-list"')


def test_the_controls_come_alone_for_htmx_with_a_fresh_command_id(as_olga, running):
    first, second = (
        text(as_olga.get(url(running), headers={**HTMX, "HX-Target": "command-controls"}))
        for _ in range(2)
    )

    assert first.strip().startswith('<div id="command-controls"')
    assert verbs(first) == ["pause", "cancel", "terminate", "signal"]
    ids = [re.search(r'name="command_id" value="([0-9a-f-]{36})"', b).group(1)
           for b in (first, second)]
    assert ids[0] != ids[1]


# --- refusals next to their field -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["cancel", "terminate"])
@pytest.mark.parametrize("confirmed", ["", "1"])
@pytest.mark.parametrize("htmx", [False, True])
def test_cancel_and_terminate_need_a_reason(as_olga, running, kind, confirmed, htmx):
    response = send(as_olga, running, kind, reason="  ", confirmed=confirmed, htmx=htmx)

    assert response.status_code == 400
    body = text(response)
    assert f"Reason: a reason is required to {kind} a run" in body
    assert 'aria-invalid="true" aria-describedby="reason-error"' in body
    assert not Command.objects.exists()


@pytest.mark.parametrize("htmx", [False, True])
def test_resume_of_a_running_run_is_refused_with_409(as_olga, running, htmx):
    response = send(as_olga, running, "resume", htmx=htmx)

    assert response.status_code == 409
    assert "Resume: the run is not paused (it is running)" in text(response)
    assert 'id="kind-error"' in text(response)
    assert not Command.objects.exists()


def test_the_same_verb_again_while_the_first_is_open_is_refused(as_olga, running):
    send(as_olga, running, "pause")

    response = send(as_olga, running, "pause", htmx=True)

    assert response.status_code == 409
    assert "Pause was already requested" in text(response)
    assert Command.objects.count() == 1


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"payload": "{not json"}, "Payload", "is not valid JSON"),
        ({"payload": "[1, 2]"}, "Payload", "must be a JSON object"),
        ({"payload": '{"a": "\\u0000"}'}, "Payload", "U+0000"),
        ({"signal_name": " "}, "Name", "a signal needs a name"),
        ({"signal_name": "x" * 201}, "Name", "must be at most 200 characters"),
    ],
)
def test_a_bad_signal_is_refused_next_to_its_field(as_olga, running, fields, field, message):
    response = send(as_olga, running, "signal", **{"signal_name": "refresh", **fields})

    assert response.status_code == 400
    body = text(response)
    assert re.search(rf'<p class="error" id="[\w-]+">{field}: [^<]*{re.escape(message)}', body)
    assert "<details class=\"signal\" open>" in body
    assert not Command.objects.exists()


@pytest.mark.parametrize("kind", ["", "approve", "explode"])
def test_a_missing_or_unknown_verb_is_400(as_olga, running, kind):
    response = as_olga.post(url(running), {"kind": kind})

    assert response.status_code == 400
    assert 'id="kind-error"' in text(response)
    assert not Command.objects.exists()


def test_a_closed_run_has_no_buttons_and_refuses_commands(as_olga, closed):
    body = text(as_olga.get(f"/runs/{closed.uuid}/"))
    assert verbs(body) == []
    assert "The run is completed: no commands can be sent to it." in body

    for kind, fields in (("pause", {}), ("terminate", {"reason": "late"})):
        response = send(as_olga, closed, kind, **fields)
        assert response.status_code == 409
        assert "The run is completed; commands can only be sent to a run that is still open" \
            in text(response)
    assert not Command.objects.exists()


# --- one command per click, confirmation ----------------------------------------------------------


@pytest.mark.parametrize("htmx", [False, True])
def test_a_double_submit_with_the_same_command_id_makes_one_command(as_olga, running, htmx):
    command_id = str(uuid.uuid4())
    headers = HTMX if htmx else {}

    first = as_olga.post(url(running), {"kind": "pause", "command_id": command_id},
                         headers=headers)
    second = as_olga.post(url(running), {"kind": "pause", "command_id": command_id},
                          headers=headers)

    assert first.status_code == (201 if htmx else 302)
    assert second.status_code == (200 if htmx else 302)
    assert [str(c.pk) for c in Command.objects.all()] == [command_id]


@pytest.mark.parametrize("htmx", [False, True])
def test_terminate_asks_for_confirmation_first(as_olga, running, htmx):
    command_id = str(uuid.uuid4())
    headers = HTMX if htmx else {}
    data = {"kind": "terminate", "reason": "runaway loop", "command_id": command_id}

    asked = as_olga.post(url(running), data, headers=headers)

    assert asked.status_code == 200
    assert not Command.objects.exists()
    body = text(asked)
    assert '<button type="submit" name="confirmed" value="1" class="danger">Confirm terminate' \
        in body
    assert '<input type="hidden" name="kind" value="terminate">' in body
    assert f'name="command_id" value="{command_id}"' in body
    assert ">runaway loop</textarea>" in body
    assert verbs(body) == []  # no other verb in the confirmation step
    assert ("<html" in body) is not htmx

    confirmed = as_olga.post(url(running), {**data, "confirmed": "1"}, headers=headers)

    assert confirmed.status_code == (201 if htmx else 302)
    command = Command.objects.get()
    assert (str(command.pk), command.kind, command.reason) == (command_id, "terminate",
                                                               "runaway loop")


def test_cancel_asks_for_confirmation_too_but_pause_does_not(as_olga, running):
    asked = send(as_olga, running, "cancel", reason="wrong customer", htmx=True)

    assert asked.status_code == 200
    assert "Confirm cancel" in text(asked)
    assert send(as_olga, running, "pause", htmx=True).status_code == 201
    assert list(Command.objects.values_list("kind", flat=True)) == ["pause"]


# --- the list: escaping, polling, approvals ------------------------------------------------------


def test_a_reason_with_markup_is_shown_as_text(as_olga, running):
    send(as_olga, running, "cancel", reason=SCRIPT, confirmed="1")

    for body in (text(as_olga.get(f"/runs/{running.uuid}/")),
                 text(as_olga.get(url(running), headers=HTMX))):
        assert SCRIPT not in body
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def test_a_refused_form_shows_what_was_typed_as_text(as_olga, running):
    response = send(as_olga, running, "signal", signal_name=SCRIPT, payload=SCRIPT)

    assert response.status_code == 400
    assert SCRIPT not in text(response)


def test_the_list_polls_while_a_command_is_open_and_stops_when_all_are_final(as_olga, running):
    send(as_olga, running, "pause")
    send(as_olga, running, "signal", signal_name="refresh")

    open_list = as_olga.get(url(running), headers=HTMX)
    assert open_list.status_code == 200
    opening = text(open_list).split(">", 1)[0]
    assert 'hx-trigger="every 2s"' in opening
    version = re.search(r"\?version=(\w+)", opening).group(1)
    # Nothing changed since: nothing to swap.
    assert as_olga.get(url(running), {"version": version}, headers=HTMX).status_code == 204

    pause, signal = Command.objects.order_by("created_at")
    assert pause.advance("dispatched") and pause.advance("applied")
    still_open = as_olga.get(url(running), {"version": version}, headers=HTMX)
    assert still_open.status_code == 200
    assert 'data-state="applied"' in text(still_open)

    assert signal.advance("expired")
    settled = as_olga.get(url(running), {"version": version}, headers=HTMX)
    assert settled.status_code == 286
    assert json.loads(settled["HX-Trigger"]) == {"commands-settled": {}}
    assert "hx-trigger" not in text(settled).split(">", 1)[0]
    assert 'data-state="expired"' in text(settled)


# Session, user, the viewer's namespace ids, the run, the latest commands, the pending approval
# requests: the same however many commands the run has.
POLL_QUERIES = 6


def test_a_poll_takes_a_fixed_number_of_queries(as_olga, running, django_assert_num_queries):
    for n in range(12):
        send(as_olga, running, "signal", signal_name=f"s{n}")

    with django_assert_num_queries(POLL_QUERIES):
        assert as_olga.get(url(running), headers=HTMX).status_code == 200


def test_a_page_with_only_final_commands_does_not_poll(as_olga, running):
    send(as_olga, running, "pause")
    Command.objects.get().advance("expired")

    body = text(as_olga.get(f"/runs/{running.uuid}/"))

    assert 'data-state="expired"' in body
    assert "every 2s\" hx-target=\"#tail" in body  # the live tail polls, the list does not
    assert 'id="command-list">' in body


def test_each_step_of_a_command_is_shown_with_its_time(as_olga, running):
    send(as_olga, running, "pause")
    command = Command.objects.get()
    command.advance("dispatched")
    command.advance("delivered")
    command.advance("rejected", ack_detail="not at a checkpoint", last_error="")

    row = text(as_olga.get(url(running), headers=HTMX)).split(f'id="command-{command.pk}"')[1]
    row = row.split("</tr>", 1)[0]

    assert "rejected" in row and "agent: not at a checkpoint" in row
    assert row.count("<time ") == 4  # requested, dispatched, delivered, finished
    assert ">olga<" in row


def test_pending_approvals_are_listed_with_a_link_to_the_inbox(as_bob, running, ingest,
                                                              agent_token):
    ingest(agent_token, [event(3, "approval.requested", attributes={
        "request_id": "r1", "action": "refund <b>now</b>", "risk": "high", "approvals": 2,
        "summary": SCRIPT, "timeout_seconds": 600})])
    approval = ApprovalRequest.objects.get()

    body = text(as_bob.get(f"/runs/{running.uuid}/"))

    section = body.split("Waiting for approval", 1)[1]
    assert f'id="approval-{approval.pk}"' in section
    assert "refund &lt;b&gt;now&lt;/b&gt;" in section and SCRIPT not in section
    assert "risk-high" in section and "0 of 2" in section
    assert re.search(r'href="[^"]*/approvals/"', section)
    assert f"?event={approval.event_id}#event-{approval.event_id}" in section


# --- the timeline --------------------------------------------------------------------------------


def test_commands_are_marked_on_the_timeline_with_their_story(as_olga, alice, running):
    send_as(alice, running, "pause", reason=SCRIPT)
    command = Command.objects.get()
    command.advance("dispatched")
    command.advance("applied")

    body = text(as_olga.get(f"/runs/{running.uuid}/"))

    timeline = body.split('id="timeline"', 1)[1].split("</section>", 1)[0]
    assert 'class="mark-head mark-command mark-requested"' in timeline
    assert f'href="#command-{command.pk}"' in timeline
    assert "<title>pause requested by alice — applied · delivered " in timeline
    assert "<title>pause applied</title>" in timeline
    assert "reason: &lt;script&gt;" in timeline and SCRIPT not in timeline


def test_records_outside_the_page_shown_are_left_off_its_timeline(as_olga, ingest, agent_token):
    events = [event(1, "workflow.started")] + [event(n, "decision.made") for n in range(2, 130)]
    assert ingest(agent_token, events).status_code == 200
    run = Run.objects.get()
    send_as(None, run, "pause", client=as_olga)

    first_page = text(as_olga.get(f"/runs/{run.uuid}/"))
    last_page = text(as_olga.get(f"/runs/{run.uuid}/", {"after": 100}))

    assert "mark-command" not in first_page.split('id="timeline"', 1)[1].split("</section>")[0]
    assert "mark-command" in last_page.split('id="timeline"', 1)[1].split("</section>")[0]


def send_as(user, run, kind, *, client=None, **fields) -> None:
    """Send a command as `user` through the view, with a client of its own."""
    if client is None:
        from django.test import Client

        client = Client()
        client.force_login(user)
    assert send(client, run, kind, **fields).status_code == 302
