"""Telling people: approvers by e-mail about new and soon-due requests, the requester about a
command that failed or expired, and a chat channel through a signed webhook that may only reach
private addresses that are allow-listed."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest
from django.utils import timezone

from access.encryption import seal
from interventions import notifications, outbound, signing
from interventions.approvals import decide, remind_due_soon
from interventions.commands import request_command
from interventions.models import AgentConnector, ApprovalRequest, Command
from interventions.tasks import deliver_command, expire, notify

pytest_plugins = ["tests.interventions.personas"]
pytestmark = pytest.mark.django_db


class ChatReceiver:
    """A local HTTP endpoint standing in for a chat service's incoming webhook."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.received.append(
                    ({name.lower(): value for name, value in self.headers.items()}, body)
                )
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass  # keep test output quiet

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/flightdeck"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def bodies(self) -> list[dict]:
        return [orjson.loads(body) for _, body in self.received]


@pytest.fixture
def chat(settings):
    """The chat webhook pointed at a local receiver, 127.0.0.1 allow-listed, no secret."""
    receiver = ChatReceiver()
    receiver.thread.start()
    settings.NOTIFY_WEBHOOK_URL = receiver.url
    settings.NOTIFY_WEBHOOK_SECRET = ""
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture(autouse=True)
def mail(settings, mailoutbox):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.NOTIFY_WEBHOOK_URL = ""
    return mailoutbox


@pytest.fixture
def addressed(alice, bob, olga, dora, erin, charlie):
    """Everyone with an e-mail address: alice (admin), dora and erin (approvers) may decide in
    acme; bob (viewer) and olga (operator) may not; charlie is an admin of globex only."""
    for user in (alice, bob, charlie):
        user.email = f"{user.username}@example.test"
        user.save(update_fields=["email"])
    return {"alice": alice, "bob": bob, "olga": olga, "dora": dora, "erin": erin,
            "charlie": charlie}


def run_notifications(broker) -> None:
    """What a worker would do with the notifications sent to the broker so far."""
    for kind, object_id in broker.notifications:
        notify.run(kind, object_id)
    broker.notifications.clear()


# --- approvers ------------------------------------------------------------------------------


def test_a_new_request_is_mailed_to_the_namespaces_approvers(addressed, ask_approval, mail):
    pending = ask_approval(action="refund", risk="high")
    notifications.send("approval_requested", str(pending.pk))
    (message,) = mail
    assert sorted(message.to) == ["alice@example.test", "dora@acme.test", "erin@acme.test"]
    assert message.subject == (
        "[Flightdeck] Approval waits for your decision: refund by acme/support-bot"
    )
    assert "Risk: high; approvals needed: 1" in message.body
    assert "http://127.0.0.1:8000/approvals/" in message.body


@pytest.mark.parametrize("on_behalf_of", ["erin", "erin@acme.test"],
                         ids=["by user name", "by e-mail"])
def test_the_person_a_request_acts_for_is_not_asked_to_decide_it(
    addressed, ask_approval, mail, on_behalf_of
):
    pending = ask_approval(on_behalf_of=on_behalf_of)
    notifications.send("approval_requested", str(pending.pk))
    assert sorted(mail[0].to) == ["alice@example.test", "dora@acme.test"]


def test_an_inactive_approver_is_not_mailed(addressed, ask_approval, mail):
    addressed["dora"].is_active = False
    addressed["dora"].save(update_fields=["is_active"])
    notifications.send("approval_requested", str(ask_approval().pk))
    assert sorted(mail[0].to) == ["alice@example.test", "erin@acme.test"]


def test_a_request_decided_before_the_mail_goes_out_is_not_mailed(addressed, ask_approval, mail):
    pending = ask_approval()
    decide(pending, addressed["dora"], "approve")
    notifications.send("approval_requested", str(pending.pk))
    assert mail == []


def test_opening_a_request_sends_its_notification_once_committed(
    addressed, ask_approval, broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        pending = ask_approval()
    assert broker.notifications == [("approval_requested", str(pending.pk))]


def test_approvers_are_reminded_once_of_a_request_close_to_its_deadline(
    addressed, ask_approval, broker, mail, settings
):
    due_soon = ask_approval()
    later = ask_approval()
    ApprovalRequest.objects.filter(pk=due_soon.pk).update(
        deadline=timezone.now() + timedelta(seconds=settings.APPROVAL_REMINDER_BEFORE_SECONDS / 2)
    )
    broker.notifications.clear()

    assert remind_due_soon() == 1
    assert broker.notifications == [("approval_due_soon", str(due_soon.pk))]
    run_notifications(broker)
    (message,) = mail
    assert message.subject.startswith("[Flightdeck] Approval is due soon: refund")
    assert remind_due_soon() == 0
    assert broker.notifications == []
    later.refresh_from_db()
    assert later.reminded_at is None


# --- the requester of a command -------------------------------------------------------------


@pytest.fixture
def unreachable_webhook(support_agent):
    """The support agent's commands go to a webhook on a private address nobody allowed."""
    return AgentConnector.objects.create(
        agent=support_agent, kind="webhook", url="http://10.0.0.7/flightdeck",
        secret_sealed=seal(signing.new_secret()),
    )


def test_a_command_that_failed_is_mailed_to_its_requester(
    running_run, olga, unreachable_webhook, broker, mail
):
    command, _ = request_command(running_run, olga, "pause", reason="look")
    deliver_command.run(str(command.pk))
    command.refresh_from_db()
    assert command.state == "failed"
    assert broker.notifications == [("command_failed", str(command.pk))]
    run_notifications(broker)
    (message,) = mail
    assert message.to == ["olga@acme.test"]
    assert message.subject == "[Flightdeck] Command failed: pause on wf-1"
    assert "10.0.0.7" in message.body and f"/runs/{running_run.uuid}/" in message.body


def test_a_command_that_expired_is_mailed_to_its_requester(running_run, olga, broker, mail):
    command, _ = request_command(running_run, olga, "signal", signal_name="nudge")
    expire(command)
    run_notifications(broker)
    (message,) = mail
    assert message.to == ["olga@acme.test"]
    assert message.subject == "[Flightdeck] Command expired: signal nudge on wf-1"


def test_a_command_without_a_requester_mails_nobody(running_run, mail):
    command = Command.objects.create(
        run=running_run, agent=running_run.agent, kind="reject", connector="pull",
        state="failed", deadline=timezone.now(), last_error="gone",
    )
    notifications.send("command_failed", str(command.pk))
    assert mail == []


# --- the chat webhook -----------------------------------------------------------------------


def test_the_chat_webhook_receives_the_text_signed_when_a_secret_is_set(
    addressed, ask_approval, chat, settings
):
    settings.NOTIFY_WEBHOOK_SECRET = signing.new_secret()
    pending = ask_approval()
    notifications.send("approval_requested", str(pending.pk))
    ((headers, body),) = chat.received
    payload = orjson.loads(body)
    assert payload["text"].startswith("[Flightdeck] Approval waits for your decision: refund")
    assert (payload["kind"], payload["id"]) == ("approval_requested", str(pending.pk))
    assert headers["content-type"] == "application/json"
    assert headers["webhook-id"] == f"approval_requested-{pending.pk}"
    assert signing.verify(
        settings.NOTIFY_WEBHOOK_SECRET, headers, body, now=int(time.time())
    )
    assert not signing.verify(signing.new_secret(), headers, body, now=int(time.time()))


def test_without_a_secret_the_chat_webhook_is_sent_unsigned(addressed, ask_approval, chat):
    notifications.send("approval_requested", str(ask_approval().pk))
    ((headers, body),) = chat.received
    assert "webhook-signature" not in headers
    assert "text" in orjson.loads(body)


def test_a_chat_service_error_is_raised_for_the_task_to_retry(addressed, ask_approval, chat):
    chat.status = 503
    with pytest.raises(OSError, match="HTTP 503"):
        notifications.send("approval_requested", str(ask_approval().pk))


def test_a_refused_chat_message_is_not_retried(addressed, ask_approval, chat):
    chat.status = 404
    notifications.send("approval_requested", str(ask_approval().pk))
    assert len(chat.received) == 1


def test_a_private_address_that_is_not_allow_listed_is_refused_and_nothing_is_sent(
    addressed, ask_approval, chat, settings
):
    settings.WEBHOOK_ALLOWED_NETWORKS = []
    with pytest.raises(outbound.RefusedAddress, match=r"127\.0\.0\.1, a loopback"):
        notifications.send("approval_requested", str(ask_approval().pk))
    assert chat.received == []


@pytest.mark.parametrize(
    "url",
    ["http://10.1.2.3/hook", "http://192.168.0.10/hook", "http://169.254.169.254/latest",
     "http://[::1]/hook", "http://0.0.0.0/hook", "http://user:pw@203.0.113.5/hook",
     "ftp://203.0.113.5/hook", "http:///hook"],
    ids=["10/8", "192.168/16", "cloud metadata", "IPv6 loopback", "unspecified",
         "credentials in the URL", "not http", "no host"],
)
def test_outgoing_urls_that_could_reach_inside_are_refused(settings, url):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    with pytest.raises(outbound.RefusedAddress):
        outbound.check_url(url)
