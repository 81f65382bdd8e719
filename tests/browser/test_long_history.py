"""A history at Temporal's limit (51,200 events): the page opens with one page of rows, more
load as the reader scrolls, and the page stays responsive."""

from __future__ import annotations

import random
import time

import pytest

from access.models import Token
from history.models import Run
from history.seeding import bulk_load, long_history, start_time

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LENGTH = 51_200
ROWS = "#history-rows > tr[id^=event-]"


@pytest.fixture
def huge_run(support_agent) -> Run:
    token = Token.issue(agent=support_agent)[0]
    history = long_history("huge-research", "huge-1", LENGTH, start_time(1), random.Random(5))
    assert bulk_load(token, iter([history])) == LENGTH
    return Run.objects.get(workflow_id="huge-research")


def _row_ids(page) -> list[int]:
    return page.eval_on_selector_all(ROWS, "rows => rows.map(tr => Number(tr.id.slice(6)))")


def _scroll_to_bottom_and_wait_for_more(page, before: int) -> None:
    page.evaluate("() => window.scrollTo(0, document.documentElement.scrollHeight)")
    page.wait_for_function(
        "([selector, before]) => document.querySelectorAll(selector).length > before",
        arg=[ROWS, before],
    )


def test_a_51200_event_history_opens_one_page_and_loads_more_on_scroll(
    browser_as, alice, huge_run
):
    assert huge_run.event_count == LENGTH
    page = browser_as(alice)
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))

    started = time.monotonic()
    page.goto(f"{page.base_url}/runs/{huge_run.uuid}/")
    page.locator(ROWS).first.wait_for()
    opened_in = time.monotonic() - started
    assert opened_in < 10, f"the page took {opened_in:.1f}s to open"
    assert "51200" in page.locator("#run-header").inner_text()
    assert page.locator("#history-rows > tr").count() <= 101
    assert page.locator("tr").count() <= 150  # the whole document, not just the history
    first_page = _row_ids(page)
    assert first_page[0] == 1 and first_page[-1] <= 100
    more = page.locator("#history-rows tr.more a", has_text="Load more events")
    assert more.count() == 1
    page.shot("long_history_opened")

    # Scrolling the "Load more events" row into view fetches the next page in its place.
    _scroll_to_bottom_and_wait_for_more(page, len(first_page))
    second = _row_ids(page)
    assert second[: len(first_page)] == first_page
    assert second[-1] > first_page[-1]
    assert second == sorted(second) and len(set(second)) == len(second)
    _scroll_to_bottom_and_wait_for_more(page, len(second))
    third = _row_ids(page)
    assert third[-1] > second[-1] and third[-1] <= 300
    assert page.locator("#history-rows tr.more").count() == 1  # only the newest one is left
    page.shot("long_history_after_scrolling")

    # Still responsive: open a row loaded by scrolling and load one of its events.
    row = page.locator(ROWS).nth(len(second))
    row.locator("summary").click()
    link = row.locator("details a[hx-get]").first
    event_id = int(link.inner_text().lstrip("#"))
    started = time.monotonic()
    link.click()
    page.wait_for_function(
        "id => document.querySelector('#event-panel #event-title')?.textContent"
        "  .startsWith(`#${id} `)",
        arg=event_id,
    )
    took = time.monotonic() - started
    assert took < 3, f"the event detail took {took:.1f}s"
    assert page.locator("#event-panel").is_visible()
    assert page_errors == []
    page.shot("long_history_event_after_scrolling")
