"""Commands from a run's page: pause, a refusal shown next to its field, terminate through its
confirmation step, the list updating in place, the command's mark on the timeline, and the same
flow with JavaScript off."""

from __future__ import annotations

import pytest

from history.models import Run
from interventions.models import Command
from tests.builders import event

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROWS = "#command-list tr[id^=command-]"


@pytest.fixture
def running(ingest, agent_token) -> Run:
    assert ingest(agent_token, [
        event(1, "workflow.started", workflow_id="refund-4711"),
        event(2, "activity.scheduled", workflow_id="refund-4711",
              attributes={"activity_type": "lookup_order", "kind": "tool"}),
    ]).status_code == 200
    return Run.objects.get(workflow_id="refund-4711")


def test_pause_then_terminate_with_its_confirmation(browser_as, alice, running):
    page = browser_as(alice)
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    page.goto(f"{page.base_url}/runs/{running.uuid}/")
    marker = page.evaluate("() => (window.__sameDocument = Math.random())")
    controls = page.locator("#command-controls")
    # The signal's inputs and button wait in a closed <details>.
    assert controls.get_by_role("button").all_inner_texts() == ["Pause", "Cancel…", "Terminate…"]

    # Enter in the signal's name field sends nothing (the form's default button is disabled):
    # it must never send whichever verb comes first.
    controls.locator("summary", has_text="Send a signal").click()
    page.fill("input[name=signal_name]", "refresh")
    page.press("input[name=signal_name]", "Enter")
    page.wait_for_timeout(500)
    assert not Command.objects.exists()
    controls.locator("summary", has_text="Send a signal").click()

    controls.get_by_role("button", name="Pause").click()
    row = page.locator(ROWS).first
    row.wait_for()
    assert row.get_attribute("data-state") == "queued"
    assert "pause" in row.inner_text() and "alice" in row.inner_text()
    assert "Pause requested: queued." in controls.inner_text()

    # A refusal comes back next to its field: cancel needs a reason.
    controls.get_by_role("button", name="Cancel…").click()
    error = page.locator("#reason-error")
    error.wait_for()
    assert error.inner_text() == "Reason: a reason is required to cancel a run"
    assert page.locator("#command-reason").get_attribute("aria-invalid") == "true"

    page.fill("#command-reason", "runaway loop, <b>costs</b> climbing")
    controls.get_by_role("button", name="Terminate…").click()
    confirm = controls.get_by_role("button", name="Confirm terminate")
    confirm.wait_for()
    assert "cannot be resumed" in controls.inner_text()
    # The reason is carried into the step, and has the focus (Enter there sends nothing).
    assert page.input_value("#command-reason") == "runaway loop, <b>costs</b> climbing"
    assert page.evaluate("() => document.activeElement.id") == "command-reason"
    assert Command.objects.count() == 1
    page.shot("commands_confirm")

    confirm.click()
    page.locator(f"{ROWS}:has-text('terminate')").wait_for()
    assert page.locator(ROWS).count() == 2
    assert "runaway loop, <b>costs</b> climbing" in page.locator(ROWS).first.inner_text()
    assert sorted(Command.objects.values_list("kind", flat=True)) == ["pause", "terminate"]
    assert page.evaluate("() => window.__sameDocument") == marker  # never reloaded
    assert page_errors == []
    page.shot("commands")

    # On the timeline, the requests are marks whose tooltip tells the story.
    page.reload()
    titles = page.locator("svg.waterfall a.wf-mark > title").all_text_contents()
    assert any(t.startswith("pause requested by alice — queued") for t in titles)
    assert any(t.startswith("terminate requested by alice — queued") for t in titles)
    page.locator("#timeline").scroll_into_view_if_needed()
    page.shot("commands_timeline")


def test_the_controls_work_without_javascript(chromium, live_server, alice, running):
    context = chromium.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto(f"{live_server.url}/accounts/login/")
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", "correct horse battery")
        page.click("button[type=submit]")
        page.goto(f"{live_server.url}/runs/{running.uuid}/")

        page.fill("#command-reason", "stuck on a tool")
        page.get_by_role("button", name="Terminate…").click()
        page.get_by_role("button", name="Confirm terminate").wait_for()
        assert Command.objects.count() == 0
        assert page.input_value("#command-reason") == "stuck on a tool"

        page.get_by_role("button", name="Confirm terminate").click()
        page.wait_for_url(f"{live_server.url}/runs/{running.uuid}/#commands")
        assert "Terminate requested: queued." in page.locator(".messages").inner_text()
        assert page.locator(ROWS).count() == 1
        command = Command.objects.get()
        assert (command.kind, command.reason) == ("terminate", "stuck on a tool")
    finally:
        context.close()
