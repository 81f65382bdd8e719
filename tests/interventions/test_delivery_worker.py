"""Command delivery end to end: real Celery worker processes on a private Redis, the real
PostgreSQL test database, uvicorn serving the long-poll, a real webhook receiver; then the
faults delivery must survive (a worker killed mid-delivery, Redis losing its queue, a receiver
that is down for a while). (The same flow with the task run in-process: test_flow.py.)

Waits poll with generous timeouts and nothing asserts on speed, except that a long-poll woken
by a command returns well before its wait would have ended: that is the wake-up working.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.test import Client

from access.encryption import seal
from access.models import Token
from history.models import Run
from interventions import signing, wakeups
from interventions.commands import request_command
from interventions.models import AgentConnector, Command
from interventions.outbound import RefusedAddress, check_url
from tests.builders import event
from tests.interventions.services import request, wait_until


def end_to_end(test):
    """Needs PostgreSQL and Redis, with committed rows that other processes can read."""
    for mark in (pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)):
        test = mark(test)
    return test


@pytest.fixture
def running_run(ingest, agent_token) -> Run:
    response = ingest(agent_token, [event(1, "workflow.started"), event(2)])
    assert response.status_code == 200, response.content
    return Run.objects.get(workflow_id="wf-1")


@pytest.fixture
def webhook_agent(support_agent, webhook_receiver):
    """The support agent takes its commands by webhook, at the receiver, with its secret."""
    AgentConnector.objects.create(
        agent=support_agent, kind="webhook", url=webhook_receiver.url,
        secret_sealed=seal(webhook_receiver.secret),
    )
    return support_agent


def command_state(command: Command) -> Command:
    command.refresh_from_db()
    return command


def delivered(*commands: Command) -> bool:
    return all(command_state(command).state == "delivered" for command in commands)


@dataclass
class PollResult:
    status: int
    body: dict
    elapsed: float


class LongPoll(threading.Thread):
    """An agent's `GET /api/v1/agent/commands?wait=N`, waiting in a thread."""

    def __init__(self, base_url: str, token: str, wait: float):
        super().__init__(daemon=True)
        self.base_url, self.token, self.wait = base_url, token, wait
        self.result: PollResult | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        started = time.monotonic()
        try:
            status, _, body = request(
                self.base_url, "GET", f"/api/v1/agent/commands?wait={self.wait:g}",
                headers={"Authorization": f"Bearer {self.token}"}, timeout=self.wait + 30,
            )
            self.result = PollResult(status, json.loads(body), time.monotonic() - started)
        except BaseException as exc:
            self.error = exc

    def outcome(self) -> PollResult:
        self.join(self.wait + 30)
        if self.error is not None:
            raise self.error
        assert self.result is not None, "the long-poll did not answer"
        return self.result


# --- the pull channel -------------------------------------------------------------------------


@end_to_end
def test_a_pause_wakes_the_waiting_long_poll_and_the_run_page_shows_it_applied(
    asgi_server, celery_worker_process, on_private_redis, alice, support_agent, agent_token
):
    base = asgi_server.url
    as_agent = {"Authorization": f"Bearer {agent_token}"}
    status, _, body = request(base, "POST", "/api/v1/ingest", headers=as_agent,
                              body={"events": [event(1, "workflow.started"), event(2)]})
    assert status == 200, body
    run = Run.objects.get(workflow_id="wf-1")

    poll = LongPoll(base, agent_token, wait=20)
    poll.start()
    redis = on_private_redis.client()
    wait_until(
        lambda: redis.pubsub_numsub(wakeups.channel(support_agent.pk))[0][1] >= 1,
        what="the long-poll to subscribe to its agent's wake-ups",
    )
    _, operator_token = Token.issue(user=alice)
    # The operator's click: the run page's form, submitted as the browser would (session
    # cookie, CSRF token and the form's command id), to the server under test.
    browser = Client()
    browser.force_login(alice)
    cookie_name = settings.SESSION_COOKIE_NAME
    session = f"{cookie_name}={browser.cookies[cookie_name].value}"
    status, headers, page = request(base, "GET", f"/runs/{run.uuid}/",
                                    headers={"Cookie": session})
    assert status == 200
    csrf_cookie = re.search(r"csrftoken=([^;]+)", headers.get("set-cookie", "")).group(1)
    form_token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    command_id = re.search(rb'name="command_id" value="([^"]+)"', page).group(1).decode()
    status, _, body = request(
        base, "POST", f"/runs/{run.uuid}/commands/",
        headers={"Cookie": f"{session}; csrftoken={csrf_cookie}",
                 "Content-Type": "application/x-www-form-urlencoded",
                 "Referer": f"{base}/runs/{run.uuid}/"},
        body=urlencode({"csrfmiddlewaretoken": form_token.decode(), "command_id": command_id,
                        "kind": "pause", "reason": "check the refund before it goes out"}
                       ).encode(),
    )
    assert status == 302, body

    polled = poll.outcome()
    assert polled.status == 200, polled.body
    assert [command["id"] for command in polled.body["commands"]] == [command_id]
    assert polled.body["commands"][0]["kind"] == "pause"
    # Woken by the command, not by the end of its 20 s wait.
    assert polled.elapsed < 15, f"the long-poll returned after {polled.elapsed:.1f} s"
    command = Command.objects.get(pk=command_id)
    assert command.state == "delivered" and command.attempts >= 1

    status, _, body = request(
        base, "POST", f"/api/v1/agent/commands/{command_id}/ack", headers=as_agent,
        body={"status": "applied", "detail": "paused at the next checkpoint"},
    )
    assert status == 200, body
    assert json.loads(body)["state"] == "applied"
    status, _, body = request(base, "POST", "/api/v1/ingest", headers=as_agent, body={"events": [
        event(3, "command.applied", attributes={"command_id": command_id}),
        event(4, "workflow.paused"),
    ]})
    assert status == 200, body

    status, _, page = request(base, "GET", f"/runs/{run.uuid}/", headers={"Cookie": session})
    assert status == 200
    assert b'class="status status-paused"' in page
    assert f'id="command-{command_id}" class="command" data-state="applied"'.encode() in page
    assert b"command.applied" in page  # the agent's own event, in the history
    status, _, body = request(base, "GET", f"/api/v1/runs/{run.uuid}/commands",
                              headers={"Authorization": f"Bearer {operator_token}"})
    assert status == 200, body
    assert [(c["id"], c["state"]) for c in json.loads(body)] == [(command_id, "applied")]
    run.refresh_from_db()
    assert run.status == "paused"


# --- webhooks ---------------------------------------------------------------------------------


def _signed(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return signing.headers(secret, message_id, timestamp, body)


def test_the_receiver_refuses_a_tampered_body_a_stale_timestamp_and_a_wrong_secret(
    webhook_receiver,
):
    """The receiver the other tests rely on checks signatures the Standard Webhooks way."""
    body = b'{"type": "command", "command": {"id": "c-1"}}'
    now = int(time.time())

    def post(headers, payload=body):
        status, _, _ = request(f"http://127.0.0.1:{webhook_receiver.port}", "POST",
                               "/hooks/flightdeck", body=payload, headers=headers)
        return status

    secret = webhook_receiver.secret
    assert post(_signed(secret, "c-1", now, body), body.replace(b"c-1", b"c-2")) == 401
    assert post(_signed(secret, "c-1", now - 600, body)) == 401
    assert post(_signed(signing.new_secret(), "c-1", now, body)) == 401
    assert post({k: v for k, v in _signed(secret, "c-1", now, body).items()
                 if k != "webhook-signature"}) == 401
    assert webhook_receiver.refused == 4 and webhook_receiver.applied == {}

    assert post(_signed(secret, "c-1", now, body)) == 200
    assert post(_signed(secret, "c-1", now + 1, body)) == 200  # a redelivery: not applied again
    assert webhook_receiver.received == ["c-1", "c-1"]
    assert list(webhook_receiver.applied) == ["c-1"]


@end_to_end
def test_a_command_reaches_the_webhook_signed_and_becomes_delivered(
    celery_worker_process, webhook_agent, webhook_receiver, running_run, alice
):
    command, _ = request_command(running_run, alice, "pause", reason="hold on")
    wait_until(lambda: delivered(command), what="the webhook delivery")
    assert command.attempts == 1 and command.last_error == ""
    assert list(webhook_receiver.applied) == [str(command.pk)]
    message = webhook_receiver.applied[str(command.pk)]
    assert message["type"] == "command"
    assert message["command"]["kind"] == "pause"
    assert message["command"]["reason"] == "hold on"
    assert message["command"]["run"]["uuid"] == str(running_run.uuid)


@pytest.mark.parametrize("url", [
    "http://10.0.0.1/hooks", "http://127.0.0.1:9/hooks", "http://169.254.169.254/latest",
    "http://[::1]/hooks", "http://192.168.1.20:8080/",
])
def test_a_webhook_url_on_a_private_address_is_refused(settings, url):
    settings.WEBHOOK_ALLOWED_NETWORKS = []
    with pytest.raises(RefusedAddress, match="loopback, private or link-local"):
        check_url(url)


def test_a_private_address_in_the_allowed_networks_is_accepted(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert check_url("http://10.0.0.1:8080/hooks") == ("http", "10.0.0.1", 8080, "10.0.0.1")
    with pytest.raises(RefusedAddress):
        check_url("http://192.168.1.20/hooks")


@end_to_end
def test_a_command_for_a_webhook_on_a_private_address_fails_with_the_reason(
    celery_worker_process, support_agent, running_run, alice
):
    # The worker allows 127.0.0.1/32 only: 10.0.0.1 stays refused.
    AgentConnector.objects.create(
        agent=support_agent, kind="webhook", url="http://10.0.0.1/hooks",
        secret_sealed=seal(signing.new_secret()),
    )
    command, _ = request_command(running_run, alice, "pause", reason="hold on")
    wait_until(lambda: command_state(command).state == "failed", what="the command to fail")
    assert command.attempts == 1
    assert "10.0.0.1" in command.last_error
    assert "WEBHOOK_ALLOWED_NETWORKS" in command.last_error
    assert command.finished_at is not None


# --- faults -----------------------------------------------------------------------------------


@end_to_end
def test_a_worker_killed_mid_delivery_is_replaced_and_the_webhook_applies_the_command_once(
    start_worker, webhook_agent, webhook_receiver, running_run, alice
):
    webhook_receiver.hold_first()
    worker = start_worker()
    command, _ = request_command(running_run, alice, "pause", reason="hold on")
    assert webhook_receiver.first_arrived.wait(30), "the first delivery never arrived"
    worker.kill()  # the whole group: the pool process in the middle of its POST, and beat
    webhook_receiver.release()
    assert command_state(command).state == "dispatched"

    start_worker()
    wait_until(lambda: delivered(command), timeout=45, what="delivery by the second worker")
    assert command.attempts >= 2
    # The same message twice (the first answer was lost with the worker), applied once.
    assert set(webhook_receiver.received) == {str(command.pk)}
    assert len(webhook_receiver.received) >= 2
    assert list(webhook_receiver.applied) == [str(command.pk)]


@end_to_end
def test_commands_queued_before_redis_lost_its_queue_are_delivered_by_the_sweeper(
    on_private_redis, start_worker, webhook_agent, webhook_receiver, running_run, alice
):
    commands = [
        request_command(running_run, alice, "signal", signal_name=f"nudge-{number}")[0]
        for number in range(5)
    ]
    redis = on_private_redis.client()
    assert redis.llen("slow") == 5  # enqueued, and no worker has run yet
    on_private_redis.restart()  # no persistence: the queue is gone
    assert on_private_redis.client().llen("slow") == 0

    start_worker()  # with beat: the sweeper finds the rows still queued
    wait_until(lambda: delivered(*commands), timeout=45, what="all five deliveries")
    assert set(webhook_receiver.applied) == {str(command.pk) for command in commands}
    assert len(webhook_receiver.received) == 5


@end_to_end
def test_a_command_requested_while_redis_is_down_is_delivered_once_it_is_back(
    on_private_redis, start_worker, webhook_agent, webhook_receiver, running_run, alice
):
    on_private_redis.stop()
    command, created = request_command(running_run, alice, "pause", reason="hold on")
    assert created and command_state(command).state == "queued"  # stored; the enqueue failed

    on_private_redis.start()
    start_worker()
    wait_until(lambda: delivered(command), timeout=45, what="delivery once Redis is back")
    assert list(webhook_receiver.applied) == [str(command.pk)]


@end_to_end
def test_a_webhook_receiver_that_was_down_gets_the_command_once_it_is_back(
    celery_worker_process, webhook_agent, webhook_receiver, running_run, alice
):
    webhook_receiver.stop()  # connections to its port are refused
    command, _ = request_command(running_run, alice, "pause", reason="hold on")
    wait_until(
        lambda: command_state(command).attempts >= 2 and command.last_error,
        what="two failed attempts",
    )
    assert command.state == "dispatched"
    assert "ConnectionRefusedError" in command.last_error

    webhook_receiver.start()
    wait_until(lambda: delivered(command), timeout=45, what="delivery once the receiver is back")
    assert command.attempts > 1
    assert list(webhook_receiver.applied) == [str(command.pk)]
    assert command.last_error == ""  # cleared by the successful delivery
