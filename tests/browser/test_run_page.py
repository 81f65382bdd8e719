"""A run's page as a user reads it: opening it from the list, the compact history, the event
panel, searching the history, the JSON view, and masked secrets for a viewer."""

from __future__ import annotations

import json
import random
import re

import pytest

from access.models import Token
from history.models import Run
from history.seeding import bulk_load, scenario, start_time
from tests.builders import event, history

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Built at runtime so that no scanner flags this file; the AWS rule must mask it.
SECRET = "AKIA" + "ABCDEFGHIJKLMNOP"
MASK = "[REDACTED:aws_access_key_id]"
ROWS = "#history-rows > tr[id^=event-]"


@pytest.fixture
def token_row(support_agent) -> Token:
    return Token.issue(agent=support_agent)[0]


def _store(token: Token, events: list[dict]) -> Run:
    bulk_load(token, iter([events]))
    return Run.objects.get(workflow_id=events[0]["workflow_id"], run_id=events[0]["run_id"])


def _assert_no_secret(page) -> None:
    assert SECRET not in page.content()
    assert SECRET not in page.locator("body").inner_text()


# --- opening a run, the compact view and the event panel ----------------------------------------


def test_open_a_run_expand_an_activity_and_load_an_event_into_the_panel(
    browser_as, alice, token_row
):
    events = scenario("support", "ticket-4711", "run-4711-a", start_time(0.1), random.Random(3),
                      steps=3)
    run = _store(token_row, events)
    page = browser_as(alice)

    page.get_by_role("link", name="ticket-4711").click()
    page.wait_for_url(re.compile(rf"/runs/{run.uuid}/$"))
    page.locator(ROWS).first.wait_for()
    marker = page.evaluate("() => (window.__sameDocument = Math.random())")

    # An LLM activity is one row in the compact view: expand it to see its attributes.
    row = page.locator(ROWS).filter(has=page.locator("span.kind.llm")).first
    assert "plan" in row.inner_text()
    details = row.locator("details")
    assert details.get_attribute("open") is None
    row.locator("summary").click()
    pre = details.locator("pre")
    pre.wait_for()
    assert details.get_attribute("open") is not None
    shown = pre.inner_text()
    assert '"activity_type":"plan"' in shown and '"kind":"llm"' in shown
    page.shot("run_page_activity_expanded")

    # Its event links load the event's detail into the side panel through htmx.
    links = details.locator("a[hx-get]")
    assert links.count() >= 3  # scheduled, started, completed
    scheduled_id = int(links.nth(0).inner_text().lstrip("#"))
    completed_id = int(links.last.inner_text().lstrip("#"))
    with page.expect_request(lambda r: f"/events/{scheduled_id}" in r.url) as request:
        links.nth(0).click()
    assert request.value.headers.get("hx-request") == "true"
    title = page.locator("#event-panel #event-title")
    title.wait_for()
    assert title.inner_text() == f"#{scheduled_id} activity.scheduled"
    assert '"activity_type": "plan"' in page.locator("#event-panel pre.json").inner_text()
    page.shot("run_page_event_panel_scheduled")

    links.last.click()
    page.wait_for_function(
        "id => document.querySelector('#event-panel #event-title')?.textContent"
        "  === `#${id} activity.completed`",
        arg=completed_id,
    )
    # The completed event refers back to its scheduled event; that link also stays in place.
    page.locator("#event-panel a", has_text=f"scheduled #{scheduled_id}").click()
    page.wait_for_function(
        "id => document.querySelector('#event-panel #event-title')?.textContent"
        "  === `#${id} activity.scheduled`",
        arg=scheduled_id,
    )
    assert page.url == f"{page.base_url}/runs/{run.uuid}/"
    assert page.evaluate("() => window.__sameDocument") == marker
    page.shot("run_page_event_panel_followed_ref")


# --- searching the history, the JSON view and masking ---------------------------------------------


def _searchable_history() -> list[dict]:
    ids = {"workflow_id": "billing-2024", "run_id": "run-b1"}
    return [
        event(1, "workflow.started", attributes={"labels": {"team": "billing"}}, **ids),
        event(2, "activity.scheduled", attributes={"activity_type": "get_invoice",
                                                   "kind": "tool"}, **ids),
        event(3, "activity.started", attributes={"attempt": 1}, refs={"scheduled": 2}, **ids),
        event(4, "activity.completed", attributes={"attempt": 1, "output": {"total": 120}},
              refs={"scheduled": 2, "started": 3}, **ids),
        event(5, "decision.made", attributes={"note": "needle: refund approved"}, **ids),
        event(6, "decision.made", attributes={"note": "nothing to see here"}, **ids),
        event(7, "decision.made", attributes={"note": f"needle: deployed with {SECRET}",
                                              "region": "eu-west-1"}, **ids),
        event(8, "workflow.completed", attributes={"result": {"resolved": True}}, **ids),
    ]


def _search_history(page, text: str) -> None:
    page.locator("#history form input[name=q]").fill(text)
    page.locator("#history form").get_by_role("button", name="Show").click()


def _wait_for_history_ids(page, expected: list[int]) -> None:
    page.wait_for_function(
        """([selector, expected]) => JSON.stringify(
               [...document.querySelectorAll(selector)].map(tr => Number(tr.id.slice(6)))
           ) === JSON.stringify(expected)""",
        arg=[ROWS, expected],
    )


def test_search_the_history_then_read_it_as_masked_pretty_json(browser_as, bob, token_row):
    run = _store(token_row, _searchable_history())
    page = browser_as(bob)  # a viewer: payloads are always masked for bob
    page.goto(f"{page.base_url}/runs/{run.uuid}/")
    _wait_for_history_ids(page, [1, 2, 5, 6, 7, 8])
    _assert_no_secret(page)
    assert "1 events with findings (masked)" in page.locator("#run-header").inner_text()
    assert page.locator("#history input[name=raw]").count() == 0  # no raw toggle for viewers

    _search_history(page, "needle")
    _wait_for_history_ids(page, [5, 7])
    for text in page.locator(ROWS).all_inner_texts():
        assert "needle" in text
    assert MASK in page.locator(f"{ROWS}#event-7").inner_text()
    _assert_no_secret(page)
    page.shot("run_page_history_search_needle")

    page.locator("#history nav.tabs").get_by_role("link", name="JSON").click()
    pre = page.locator("#history pre.json")
    pre.wait_for()
    assert page.locator("#history nav.tabs a[aria-current=page]").inner_text() == "JSON"
    text = pre.inner_text()
    assert '[\n  {\n    "event_id": 5,' in text  # indented, one field a line
    shown = json.loads(text)
    assert [item["event_id"] for item in shown] == [5, 7]
    assert shown[1]["attributes"]["note"] == f"needle: deployed with {MASK}"
    assert shown[1]["secret_findings"] == [{"rule": "aws_access_key_id", "path": "/note"}]
    _assert_no_secret(page)
    page.shot("run_page_history_json_masked")

    # The full view and the event panel mask it too, and offer bob no raw payloads.
    page.locator("#history nav.tabs").get_by_role("link", name="Full").click()
    page.locator(f"{ROWS}#event-7 a[hx-get]").click()
    page.locator("#event-panel #event-title").wait_for()
    panel = page.locator("#event-panel").inner_text()
    assert "#7 decision.made" in panel and MASK in panel and "Secrets found" in panel
    assert page.locator("#event-panel a", has_text="show raw").count() == 0
    _assert_no_secret(page)
    page.shot("run_page_event_panel_masked")

    # Guessing the secret finds nothing: search reads the masked form.
    _search_history(page, SECRET[:12])
    page.locator("#history p.muted", has_text="No events match.").wait_for()
    _assert_no_secret(page)


def test_a_history_search_is_kept_in_the_address_for_reload_and_sharing(
    browser_as, alice, token_row
):
    run = _store(token_row, _searchable_history())
    page = browser_as(alice)
    page.goto(f"{page.base_url}/runs/{run.uuid}/")
    _wait_for_history_ids(page, [1, 2, 5, 6, 7, 8])

    _search_history(page, "needle")
    _wait_for_history_ids(page, [5, 7])
    page.shot("run_page_history_search_address")

    assert "q=needle" in page.url, f"after searching, the address is {page.url}"
    page.reload()
    _wait_for_history_ids(page, [5, 7])
    assert page.locator("#history form input[name=q]").input_value() == "needle"


def test_a_secret_in_a_run_label_is_masked_for_a_viewer(browser_as, bob, token_row):
    """workflow.started's labels become the run's labels, shown in the run header (as text and
    in the label filter links): they must come from the masked attributes."""
    ids = {"workflow_id": "deploy-77", "run_id": "run-d1"}
    run = _store(token_row, [
        event(1, "workflow.started", attributes={"labels": {"team": "ops", "deploy": SECRET}},
              **ids),
        event(2, "decision.made", attributes={"note": "rolled out"}, **ids),
    ])
    page = browser_as(bob)
    page.locator("#run-list a", has_text="deploy-77").wait_for()
    page.shot("run_list_label_secret")
    _assert_no_secret(page)

    page.goto(f"{page.base_url}/runs/{run.uuid}/")
    page.locator(ROWS).first.wait_for()
    page.shot("run_page_label_secret")
    _assert_no_secret(page)


def test_the_json_view_pages_on_to_the_next_events(browser_as, alice, token_row):
    run = _store(token_row, history(150, workflow_id="batch-150", run_id="run-150"))
    page = browser_as(alice)
    page.goto(f"{page.base_url}/runs/{run.uuid}/")
    page.locator(ROWS).first.wait_for()

    page.locator("#history nav.tabs").get_by_role("link", name="JSON").click()
    page.locator("#history pre.json").wait_for()
    shown = json.loads(page.locator("#history pre.json").inner_text())
    assert [item["event_id"] for item in shown] == list(range(1, 101))

    page.locator("#history").get_by_role("link", name="Next events →").click()
    page.wait_for_function(
        "() => !document.querySelector('#history pre.json')"
        "  || !document.querySelector('#history pre.json').textContent.includes('\"event_id\": 1,')"
    )
    page.shot("run_page_json_next_events")
    in_its_place = page.evaluate(
        "() => document.querySelector('.run-main').lastElementChild.outerHTML.slice(0, 160)")
    assert page.locator("#history pre.json").count() == 1, (
        f"after 'Next events →' the history region is gone; in its place: {in_its_place}"
    )
    shown = json.loads(page.locator("#history pre.json").inner_text())
    assert [item["event_id"] for item in shown] == list(range(101, 151))
    assert page.locator("#history nav.tabs a[aria-current=page]").inner_text() == "JSON"
