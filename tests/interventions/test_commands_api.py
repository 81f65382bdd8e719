"""The commands API: operators send commands to a run (`/api/v1/runs/{uuid}/commands`), agents
pick them up (`/api/v1/agent/commands`, a long-poll) and acknowledge them
(`/api/v1/agent/commands/{id}/ack`), or report them in their events."""

from __future__ import annotations

import time
import uuid

import pytest
from django.test import Client

from access.models import Token
from audit.models import AuditEntry
from history.models import Event, Run
from interventions.commands import create_command
from interventions.models import Command
from interventions.tasks import deliver_command
from tests.builders import event

pytest_plugins = ["tests.interventions.personas"]
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("broker")]

VERBS = {
    "pause": {"kind": "pause", "reason": "looks wrong"},
    "resume": {"kind": "resume"},
    "cancel": {"kind": "cancel", "reason": "customer withdrew"},
    "terminate": {"kind": "terminate", "reason": "runaway loop"},
    "signal": {"kind": "signal", "signal_name": "raise_limit", "payload": {"limit": 50}},
}


def bearer(token: str) -> Client:
    return Client(headers={"Authorization": f"Bearer {token}"})


def commands_url(run) -> str:
    return f"/api/v1/runs/{run.uuid}/commands"


def nothing_sent() -> bool:
    return not Command.objects.exists() and not AuditEntry.objects.filter(
        action="command.requested"
    ).exists()


@pytest.fixture(params=["session", "user token"])
def as_olga(request, client, olga) -> Client:
    """The operator, signed in or with a user token."""
    if request.param == "session":
        client.force_login(olga)
        return client
    return bearer(Token.issue(user=olga)[1])


@pytest.fixture
def dispatched(running_run):
    """A pause command for wf-1 that the delivery task has dispatched to the pull channel."""
    command = create_command(running_run, "pause", reason="look")
    deliver_command.run(str(command.pk))
    command.refresh_from_db()
    assert command.state == "dispatched"
    return command


# --- sending a command ------------------------------------------------------------------------


@pytest.mark.parametrize("verb", list(VERBS))
def test_an_operator_sends_each_verb(
    as_olga, olga, running_run, report, broker, django_capture_on_commit_callbacks, verb
):
    if verb == "resume":
        report("workflow.paused")
    with django_capture_on_commit_callbacks(execute=True):
        response = as_olga.post(
            commands_url(running_run), VERBS[verb], content_type="application/json"
        )
    assert response.status_code == 201, response.content
    body = response.json()
    command = Command.objects.get()
    assert body["id"] == str(command.pk)
    assert (body["kind"], body["state"], body["requested_by"]) == (verb, "queued", "olga")
    assert body["run"] == str(running_run.uuid)
    assert (command.reason, command.payload) == (
        VERBS[verb].get("reason", ""), VERBS[verb].get("payload", {})
    )
    assert command.signal_name == VERBS[verb].get("signal_name", "")
    # Enqueued once the transaction committed, and audited with the operator's name.
    assert broker.deliveries == [(str(command.pk), "pull")]
    entry = AuditEntry.objects.get(action="command.requested")
    assert (entry.actor_id_copy, entry.object_id) == (olga.pk, str(command.pk))


@pytest.mark.parametrize("persona", ["bob", "ivy", "dora"],
                         ids=["viewer", "investigator", "approver"])
def test_a_member_who_is_not_an_operator_is_refused(
    request, client, running_run, persona
):
    client.force_login(request.getfixturevalue(persona))
    response = client.post(
        commands_url(running_run), VERBS["pause"], content_type="application/json"
    )
    assert response.status_code == 403
    assert "operate" in response.json()["detail"]
    assert nothing_sent()


def test_an_outsider_is_told_there_is_no_such_run(as_charlie, running_run):
    response = as_charlie.post(
        commands_url(running_run), VERBS["pause"], content_type="application/json"
    )
    assert response.status_code == 404
    assert nothing_sent()


@pytest.mark.parametrize("run_uuid", ["not-a-uuid", str(uuid.uuid4()), "1"],
                         ids=["not a uuid", "unknown", "a number"])
def test_a_bad_run_id_is_not_found(as_olga, running_run, run_uuid):
    response = as_olga.post(
        f"/api/v1/runs/{run_uuid}/commands", VERBS["pause"], content_type="application/json"
    )
    assert response.status_code == 404
    assert nothing_sent()


def test_an_agent_token_can_never_send_commands(running_run, agent_token):
    response = bearer(agent_token).post(
        commands_url(running_run), VERBS["pause"], content_type="application/json"
    )
    assert response.status_code == 403
    assert "agent token" in response.json()["detail"]
    assert nothing_sent()


def test_an_agent_token_can_never_decide_an_approval(ask_approval, agent_token):
    pending = ask_approval()
    response = bearer(agent_token).post(
        f"/api/v1/approvals/{pending.pk}/decision", {"decision": "approve"},
        content_type="application/json",
    )
    assert response.status_code == 403
    pending.refresh_from_db()
    assert pending.state == "pending" and not pending.decisions.exists()
    assert not Command.objects.exists()


def test_without_credentials_the_api_asks_for_them(client, running_run):
    response = client.post(
        commands_url(running_run), VERBS["pause"], content_type="application/json"
    )
    assert response.status_code == 401
    assert nothing_sent()


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_commands_are_not_changed_or_deleted_through_the_api(as_olga, running_run, method):
    response = getattr(as_olga, method)(commands_url(running_run))
    assert response.status_code == 405


BAD_INPUT = {
    "kind unknown": ({"kind": "explode"}, "kind"),
    "kind missing": ({"reason": "x"}, "kind"),
    "kind a list": ({"kind": ["pause"]}, "kind"),
    "approve is not an operator verb": ({"kind": "approve"}, "kind"),
    "payload a list": ({"kind": "pause", "payload": [1, 2]}, "payload"),
    "payload a string": ({"kind": "pause", "payload": "limit=50"}, "payload"),
    "payload too large": ({"kind": "signal", "signal_name": "s", "payload": {"x": "y" * 70_000}},
                          "payload"),
    "signal without name": ({"kind": "signal"}, "signal_name"),
    "signal with a blank name": ({"kind": "signal", "signal_name": "  "}, "signal_name"),
    "a name on a pause": ({"kind": "pause", "signal_name": "go"}, "signal_name"),
    "cancel without reason": ({"kind": "cancel"}, "reason"),
    "terminate with a blank reason": ({"kind": "terminate", "reason": "  \n"}, "reason"),
    "reason too long": ({"kind": "pause", "reason": "x" * 2001}, "reason"),
    "command_id not a uuid": ({"kind": "pause", "command_id": "click-1"}, "command_id"),
    "signal name too long": ({"kind": "signal", "signal_name": "s" * 201}, "signal_name"),
    "NUL in the payload": ({"kind": "signal", "signal_name": "s", "payload": {"a": "x\u0000"}},
                           "payload"),
    "NUL in a payload key": ({"kind": "signal", "signal_name": "s",
                              "payload": {"k\u0000": 1}}, "payload"),
    "NUL in the reason": ({"kind": "pause", "reason": "a\u0000b"}, "reason"),
    "an integer beyond 64 bits": ({"kind": "signal", "signal_name": "s",
                                   "payload": {"n": 2**70}}, "payload"),
}


@pytest.mark.parametrize(("body", "field"), list(BAD_INPUT.values()), ids=list(BAD_INPUT))
def test_bad_input_is_refused_naming_the_field(as_olga, running_run, body, field):
    response = as_olga.post(commands_url(running_run), body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert nothing_sent()


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'"pause"', b"null"],
                         ids=["not json", "a list", "a string", "null"])
def test_a_body_that_is_not_a_json_object_is_refused(as_olga, running_run, body):
    response = as_olga.post(commands_url(running_run), body, content_type="application/json")
    assert 400 <= response.status_code < 500
    assert nothing_sent()


@pytest.mark.parametrize("closing", ["workflow.completed", "workflow.failed",
                                     "workflow.terminated"])
def test_a_closed_run_takes_no_commands(as_olga, running_run, report, closing):
    report(closing)
    response = as_olga.post(
        commands_url(running_run), VERBS["cancel"], content_type="application/json"
    )
    assert response.status_code == 409
    (message,) = response.json()["kind"]
    assert "commands can only be sent to a run that is still open" in message
    assert nothing_sent()


def test_resume_is_refused_unless_the_run_is_paused(as_olga, running_run):
    response = as_olga.post(
        commands_url(running_run), VERBS["resume"], content_type="application/json"
    )
    assert response.status_code == 409
    assert response.json() == {"kind": ["resume: the run is not paused (it is running)"]}
    assert nothing_sent()


def test_pause_is_refused_while_a_pause_is_on_its_way(as_olga, running_run):
    first = as_olga.post(commands_url(running_run), VERBS["pause"], content_type="application/json")
    again = as_olga.post(commands_url(running_run), VERBS["pause"], content_type="application/json")
    assert (first.status_code, again.status_code) == (201, 409)
    assert "pause was already requested" in again.json()["kind"][0]
    assert Command.objects.count() == 1


def test_a_repeated_command_id_returns_the_first_command(as_olga, running_run):
    body = {**VERBS["pause"], "command_id": str(uuid.uuid4())}
    first = as_olga.post(commands_url(running_run), body, content_type="application/json")
    again = as_olga.post(commands_url(running_run), body, content_type="application/json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"] == body["command_id"]
    assert Command.objects.count() == 1
    assert AuditEntry.objects.filter(action="command.requested").count() == 1


def test_a_command_id_already_used_for_another_verb_is_refused(as_olga, running_run):
    command_id = str(uuid.uuid4())
    as_olga.post(commands_url(running_run), {**VERBS["pause"], "command_id": command_id},
                 content_type="application/json")
    response = as_olga.post(
        commands_url(running_run), {**VERBS["signal"], "command_id": command_id},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "command_id" in response.json()
    assert Command.objects.count() == 1


# --- listing a run's commands -----------------------------------------------------------------


def test_the_list_shows_a_runs_commands_oldest_first_with_their_states(
    client, bob, running_run, dispatched
):
    later = create_command(running_run, "signal", signal_name="go")
    client.force_login(bob)  # a viewer may read them
    response = client.get(commands_url(running_run))
    assert response.status_code == 200
    assert [(c["id"], c["kind"], c["state"]) for c in response.json()] == [
        (str(dispatched.pk), "pause", "dispatched"),
        (str(later.pk), "signal", "queued"),
    ]


def test_the_list_is_not_found_for_an_outsider_and_closed_to_agents(
    as_charlie, running_run, agent_token
):
    assert as_charlie.get(commands_url(running_run)).status_code == 404
    assert bearer(agent_token).get(commands_url(running_run)).status_code == 403


# --- the agent's acknowledgement --------------------------------------------------------------


def ack_url(command) -> str:
    return f"/api/v1/agent/commands/{command.pk}/ack"


def test_an_agent_acknowledges_its_command_and_a_repeat_is_harmless(dispatched, agent_token):
    agent = bearer(agent_token)
    response = agent.post(ack_url(dispatched), {"status": "applied", "detail": "paused"},
                          content_type="application/json")
    assert response.status_code == 200, response.content
    assert (response.json()["state"], response.json()["ack_detail"]) == ("applied", "paused")
    finished = Command.objects.get().finished_at
    again = agent.post(ack_url(dispatched), {"status": "applied"},
                       content_type="application/json")
    assert again.status_code == 200
    command = Command.objects.get()
    assert (command.state, command.ack_detail, command.finished_at) == (
        "applied", "paused", finished
    )


def test_an_agent_cannot_change_its_verdict(dispatched, agent_token):
    agent = bearer(agent_token)
    agent.post(ack_url(dispatched), {"status": "rejected", "detail": "busy"},
               content_type="application/json")
    response = agent.post(ack_url(dispatched), {"status": "applied"},
                          content_type="application/json")
    assert response.status_code == 409
    assert "already rejected" in response.json()["status"][0]
    assert Command.objects.get().state == "rejected"


def test_a_command_not_yet_dispatched_cannot_be_acknowledged(running_run, agent_token):
    command = create_command(running_run, "pause")
    response = bearer(agent_token).post(ack_url(command), {"status": "applied"},
                                        content_type="application/json")
    assert response.status_code == 409
    assert Command.objects.get().state == "queued"


@pytest.mark.parametrize("token", ["other_agent_token", "foreign_agent_token"],
                         ids=["same namespace", "other namespace"])
def test_another_agents_command_is_not_found(request, dispatched, token):
    response = bearer(request.getfixturevalue(token)).post(
        ack_url(dispatched), {"status": "applied"}, content_type="application/json"
    )
    assert response.status_code == 404
    assert Command.objects.get().state == "dispatched"


def test_an_unknown_command_is_not_found(running_run, agent_token):
    response = bearer(agent_token).post(
        f"/api/v1/agent/commands/{uuid.uuid4()}/ack", {"status": "applied"},
        content_type="application/json",
    )
    assert response.status_code == 404


def test_a_user_token_cannot_acknowledge(dispatched, olga):
    response = bearer(Token.issue(user=olga)[1]).post(
        ack_url(dispatched), {"status": "applied"}, content_type="application/json"
    )
    assert response.status_code == 403
    assert Command.objects.get().state == "dispatched"


@pytest.mark.parametrize("body", [{"status": "done"}, {}, {"status": ["applied"]}],
                         ids=["unknown", "missing", "a list"])
def test_a_bad_status_is_refused_naming_it(dispatched, agent_token, body):
    response = bearer(agent_token).post(ack_url(dispatched), body,
                                        content_type="application/json")
    assert response.status_code == 400
    assert "status" in response.json()
    assert Command.objects.get().state == "dispatched"


# --- the long-poll --------------------------------------------------------------------------

POLL = "/api/v1/agent/commands"


def poll(token: str, wait="0"):
    return bearer(token).get(POLL, {"wait": wait})


def test_a_poll_hands_out_this_agents_dispatched_commands_only(
    dispatched, ingest, other_agent_token, agent_token
):
    ingest(other_agent_token, [event(1, "workflow.started", workflow_id="wf-billing")])
    theirs = create_command(Run.objects.get(workflow_id="wf-billing"), "pause")
    deliver_command.run(str(theirs.pk))
    queued = create_command(dispatched.run, "signal", signal_name="not yet")

    response = poll(agent_token)
    assert response.status_code == 200
    (message,) = response.json()["commands"]
    assert message["id"] == str(dispatched.pk)
    assert (message["kind"], message["reason"], message["attempt"]) == ("pause", "look", 1)
    assert message["run"]["uuid"] == str(dispatched.run.uuid)
    assert {c.pk: c.state for c in Command.objects.all()} == {
        dispatched.pk: "delivered", theirs.pk: "dispatched", queued.pk: "queued",
    }


@pytest.mark.parametrize("wait", ["x", "-1", "9999", "nan", "inf", ""])
def test_a_bad_wait_is_refused_naming_it(agent_token, wait):
    response = poll(agent_token, wait)
    assert response.status_code == 400
    assert "wait" in response.json()


def test_a_poll_without_a_token_asks_for_one(client):
    response = client.get(POLL, {"wait": "0"})
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_poll_with_an_unknown_token_is_unauthorized(db):
    assert poll("fda_00000000_nope").status_code == 401


def test_a_poll_with_a_user_token_is_forbidden(olga):
    assert poll(Token.issue(user=olga)[1]).status_code == 403


def test_a_poll_is_a_get(agent_token):
    assert bearer(agent_token).post(POLL).status_code == 405


def test_a_poll_with_nothing_ready_waits_then_answers_empty(running_run, agent_token):
    started = time.monotonic()
    response = poll(agent_token, "0.3")
    assert response.status_code == 200 and response.json() == {"commands": []}
    assert time.monotonic() - started >= 0.3


def test_an_unacknowledged_command_is_handed_out_again_only_after_the_redelivery_interval(
    dispatched, agent_token, settings
):
    settings.COMMAND_PULL_REDELIVER_SECONDS = 1
    assert [c["id"] for c in poll(agent_token).json()["commands"]] == [str(dispatched.pk)]
    assert poll(agent_token).json()["commands"] == []
    time.sleep(1.1)
    assert [c["id"] for c in poll(agent_token).json()["commands"]] == [str(dispatched.pk)]
    bearer(agent_token).post(ack_url(dispatched), {"status": "applied"},
                             content_type="application/json")
    time.sleep(1.1)
    assert poll(agent_token).json()["commands"] == []


# --- what the agent reports in its events -----------------------------------------------------


def test_a_reported_receipt_marks_the_command_delivered(dispatched, report):
    report("command.received", command_id=str(dispatched.pk))
    dispatched.refresh_from_db()
    assert dispatched.state == "delivered" and dispatched.delivered_at is not None


def test_a_reported_application_marks_the_command_applied(dispatched, report):
    report("command.applied", command_id=str(dispatched.pk))
    dispatched.refresh_from_db()
    assert dispatched.state == "applied" and dispatched.finished_at is not None


def test_a_reported_rejection_keeps_the_agents_detail(dispatched, report):
    report("command.rejected", command_id=str(dispatched.pk), detail="already paused")
    dispatched.refresh_from_db()
    assert (dispatched.state, dispatched.ack_detail) == ("rejected", "already paused")


def test_a_receipt_reported_after_the_verdict_changes_nothing(dispatched, report):
    report("command.applied", command_id=str(dispatched.pk))
    report("command.received", command_id=str(dispatched.pk))
    dispatched.refresh_from_db()
    assert dispatched.state == "applied"


def test_an_event_naming_another_runs_command_changes_nothing(dispatched, report):
    report("workflow.started", workflow_id="wf-2")
    report("command.applied", workflow_id="wf-2", command_id=str(dispatched.pk))
    dispatched.refresh_from_db()
    assert dispatched.state == "dispatched"


@pytest.mark.parametrize("command_id", ["nope", 123, None, {"id": 1}, ["x"], ""],
                         ids=["a word", "a number", "null", "an object", "a list", "empty"])
def test_a_malformed_command_id_never_fails_ingest(dispatched, report, command_id):
    report("command.applied", command_id=command_id)  # asserts ingest answered 200
    assert Event.objects.filter(type="command.applied").exists()
    dispatched.refresh_from_db()
    assert dispatched.state == "dispatched"


def test_an_event_without_a_command_id_never_fails_ingest(dispatched, report):
    report("command.rejected", detail="which one?")
    assert Event.objects.filter(type="command.rejected").exists()
    assert Command.objects.get().state == "dispatched"
