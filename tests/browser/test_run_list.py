"""The run list as a user works it: the id search, the status checkboxes, the URL that htmx
pushes, and saved views that reopen the same filters."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from access.models import Token
from history.seeding import bulk_load
from tests.builders import event

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROWS = "#run-list table.runs tbody tr"
RUNS = {
    "order-100": "completed",
    "order-101": "failed",
    "order-102": "running",
    "invoice-200": "completed",
    "invoice-201": "failed",
}
OUTCOME_EVENTS = {"completed": "workflow.completed", "failed": "workflow.failed"}

# True once no htmx request has been in flight for half a second (htmx marks the element that
# issued a request with the class htmx-request while it runs).
QUIET = """() => {
    const now = performance.now();
    if (document.querySelector('.htmx-request')) { window.__quietSince = null; return false; }
    window.__quietSince = window.__quietSince ?? now;
    return now - window.__quietSince > 500;
}"""


def _history(workflow_id: str, status: str) -> list[dict]:
    ids = {"workflow_id": workflow_id, "run_id": f"{workflow_id}-r1"}
    events = [
        event(1, "workflow.started", attributes={"labels": {"team": "support"}}, **ids),
        event(2, "decision.made", attributes={"decision": "look it up"}, **ids),
    ]
    if status in OUTCOME_EVENTS:
        events.append(event(3, OUTCOME_EVENTS[status], **ids))
    return events


@pytest.fixture
def runs(support_agent):
    token = Token.issue(agent=support_agent)[0]
    bulk_load(token, iter([_history(wid, status) for wid, status in RUNS.items()]))
    return RUNS


def _shown(page) -> list[str]:
    """Workflow ids of the rows in the list (none when it says 'No runs match')."""
    return sorted(page.locator(f"{ROWS} td:nth-child(2) a").all_inner_texts())


def _query(page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def _wait_for_rows(page, expected: list[str]) -> None:
    """Wait until the list shows exactly `expected` (htmx swaps it in place)."""
    page.wait_for_function(
        """([selector, expected]) => {
            const ids = [...document.querySelectorAll(selector)].map(a => a.textContent.trim());
            return JSON.stringify(ids.sort()) === JSON.stringify(expected);
        }""",
        arg=[f"{ROWS} td:nth-child(2) a", sorted(expected)],
    )


def _apply_filters(page) -> None:
    """Search for 'order' (Enter in the field), tick 'failed' and apply."""
    marker = page.evaluate("() => (window.__sameDocument = Math.random())")
    search = page.get_by_role("searchbox", name="Search ids")
    search.fill("order")
    search.press("Enter")
    page.wait_for_url(lambda url: "q=order" in url)
    _wait_for_rows(page, ["order-100", "order-101", "order-102"])
    page.locator("input[name=status][value=failed]").check()
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(lambda url: "status=failed" in url)
    _wait_for_rows(page, ["order-101"])
    # htmx swapped the list in place: no full page load happened.
    assert page.evaluate("() => window.__sameDocument") == marker


def test_searching_and_ticking_a_status_filters_the_list_and_the_url(browser_as, alice, runs):
    page = browser_as(alice)
    _wait_for_rows(page, list(runs))
    page.shot("run_list_all")

    _apply_filters(page)

    query = _query(page)
    assert query["q"] == ["order"]
    assert query["status"] == ["failed"]
    assert "failed" in page.locator(f"{ROWS} td:nth-child(1)").inner_text()
    page.shot("run_list_filtered_order_failed")

    # The pushed URL is a real address: loading it shows the same filtered list and form.
    page.reload()
    _wait_for_rows(page, ["order-101"])
    assert page.get_by_role("searchbox", name="Search ids").input_value() == "order"
    assert page.locator("input[name=status][value=failed]").is_checked()
    assert not page.locator("input[name=status][value=completed]").is_checked()


def test_ticking_a_status_checkbox_applies_it_like_the_selects_do(browser_as, alice, runs):
    """The form applies a changed <select> at once (hx-trigger 'change from:select'); a status
    checkbox is the same kind of choice and should too."""
    page = browser_as(alice)
    _wait_for_rows(page, list(runs))
    page.get_by_label("Sort by").select_option("closed")
    page.wait_for_url(lambda url: "sort=closed" in url)  # a select applies at once

    page.locator("input[name=status][value=completed]").check()
    page.shot("run_list_ticked_completed")

    page.wait_for_url(lambda url: "status=completed" in url, timeout=5_000)
    _wait_for_rows(page, ["order-100", "invoice-200"])


def test_enter_in_the_id_search_fetches_the_list_once(browser_as, alice, runs):
    """One Enter, one request and one swap: a second swap of the list a moment later throws
    away whatever the user did in it meanwhile (keyboard focus on a run's link, for one)."""
    page = browser_as(alice)
    _wait_for_rows(page, list(runs))
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(f"{r.url} (trigger {r.headers.get('hx-trigger')})")
            if r.headers.get("hx-target") == "run-list" and "q=order" in r.url else None)

    search = page.get_by_role("searchbox", name="Search ids")
    search.fill("order")
    search.press("Enter")
    _wait_for_rows(page, ["order-100", "order-101", "order-102"])
    page.wait_for_function(QUIET)
    page.shot("run_list_search_enter")

    assert len(fetched) == 1, f"one Enter fetched the list {len(fetched)} times: {fetched}"


def test_a_saved_view_reopens_the_filters_it_was_saved_with(browser_as, alice, runs):
    page = browser_as(alice)
    _wait_for_rows(page, list(runs))
    _apply_filters(page)

    held = page.locator("#saved-view-query").input_value()
    page.get_by_role("textbox", name="Name of the saved view").fill("Failed orders")
    page.get_by_role("button", name="Save view", exact=True).click()
    page.get_by_role("link", name="Failed orders").wait_for()
    page.shot("run_list_saved_view_created")
    why = f"saving went to {page.url}; the form's hidden query held {held!r}"
    assert _query(page).get("q") == ["order"], why
    assert _query(page).get("status") == ["failed"], why

    # Clear the filters, then reopen the view from its link.
    page.get_by_role("link", name="Clear").click()
    page.wait_for_url(f"{page.base_url}/")
    _wait_for_rows(page, list(runs))
    page.get_by_role("link", name="Failed orders").click()
    page.wait_for_url(lambda url: "q=" in url or url.rstrip("/") == page.base_url, timeout=5_000)
    query = _query(page)
    assert query.get("q") == ["order"], f"the saved view opened {page.url}"
    assert query.get("status") == ["failed"], f"the saved view opened {page.url}"
    _wait_for_rows(page, ["order-101"])
    assert page.get_by_role("searchbox", name="Search ids").input_value() == "order"
    assert page.locator("input[name=status][value=failed]").is_checked()
    page.shot("run_list_saved_view_reopened")
