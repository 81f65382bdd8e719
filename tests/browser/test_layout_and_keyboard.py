"""Layout and keyboard: at phone width (390px) the run list and a run's page fit the screen; on
a desktop a run's history stays in its column, clear of the side panel; and the run list can be
worked from the keyboard."""

from __future__ import annotations

import random

import pytest

from access.models import Token
from history.models import Run
from history.seeding import bulk_load, scenario, start_time

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = 390
SLACK = 4  # px: rounding, never a scrollbar's worth

# The document's width, the single column the layout grid gives <main>'s content, and the
# widest tables (what can push that column wider than the screen).
OVERFLOW_REPORT = """() => {
    const layout = document.querySelector('.list-layout, .run-layout');
    return {
        scroll: document.documentElement.scrollWidth,
        width: window.innerWidth,
        columns: layout ? getComputedStyle(layout).gridTemplateColumns : null,
        tables: [...document.querySelectorAll('main table')]
            .map(t => `table.${t.getAttribute('class')} ${Math.round(t.offsetWidth)}px`),
    };
}"""

# True once no htmx request has been in flight for half a second (htmx marks the element that
# issued a request with the class htmx-request while it runs).
QUIET = """() => {
    const now = performance.now();
    if (document.querySelector('.htmx-request')) { window.__quietSince = null; return false; }
    window.__quietSince = window.__quietSince ?? now;
    return now - window.__quietSince > 500;
}"""


@pytest.fixture
def runs(support_agent) -> list[Run]:
    token = Token.issue(agent=support_agent)[0]
    rng = random.Random(11)
    # Real-looking content: long ids, LLM and tool activities, timers, labels.
    histories = [
        scenario("support", f"support-ticket-{n}-escalation",
                 f"0193c8f2-7d4e-7a9b-b1c3-5f6e7d8c9a{n}", start_time(0.2 + n / 100), rng,
                 steps=4, close=n % 2 == 0)
        for n in range(10, 14)
    ]
    bulk_load(token, iter(histories))
    return list(Run.objects.order_by("-started_at"))


def _assert_fits(page, name: str) -> None:
    report = page.evaluate(OVERFLOW_REPORT)
    assert report["scroll"] <= report["width"] + SLACK, (
        f"{name}: the page is {report['scroll']}px wide on a {report['width']}px screen; "
        f"layout columns {report['columns']}; tables: {report['tables']}"
    )


def test_the_run_list_fits_a_phone(browser_as, alice, runs):
    page = browser_as(alice, width=PHONE)
    page.locator("#run-list table.runs tbody a").first.wait_for()
    page.shot("phone_run_list")
    _assert_fits(page, "run list")


def test_a_run_page_fits_a_phone(browser_as, alice, runs):
    page = browser_as(alice, width=PHONE)
    page.goto(f"{page.base_url}/runs/{runs[0].uuid}/")
    page.locator("#history-rows > tr").first.wait_for()
    page.locator("#durability").wait_for()  # the side panel's lazy part is in too
    page.shot("phone_run_page")
    _assert_fits(page, "run page")


def test_on_a_desktop_the_history_stays_clear_of_the_side_panel(browser_as, alice, runs):
    page = browser_as(alice)  # 1280px wide: history and side panel side by side
    page.goto(f"{page.base_url}/runs/{runs[0].uuid}/")
    page.locator("#history-rows > tr").first.wait_for()
    page.locator("#history-rows summary").first.click()
    page.locator("#history-rows details a[hx-get]").first.click()
    page.locator("#event-panel #event-title").wait_for()
    page.locator("#history").scroll_into_view_if_needed()
    page.shot("desktop_run_page_history_and_panel")
    edges = page.evaluate("""() => ({
        column: Math.round(document.querySelector('.run-main').getBoundingClientRect().right),
        table: Math.round(document.querySelector('#history table.events')
            .getBoundingClientRect().right),
        panel: Math.round(document.querySelector('.run-side').getBoundingClientRect().left),
    })""")
    assert edges["table"] <= edges["panel"], (
        f"the history table ends at x={edges['table']}px, under the side panel that starts at "
        f"x={edges['panel']}px (its own column ends at x={edges['column']}px)"
    )


def test_tab_reaches_the_search_field_then_the_first_run(browser_as, alice, runs):
    page = browser_as(alice, width=PHONE)
    first_run = page.locator("#run-list table.runs tbody a").first
    first_run.wait_for()
    page.evaluate("() => document.activeElement.blur()")

    reached: dict[str, int] = {}
    for presses in range(1, 81):
        page.keyboard.press("Tab")
        focused = page.evaluate("""() => {
            const el = document.activeElement;
            if (el.matches('input[type=search][name=q]')) return 'search';
            if (el === document.querySelector('#run-list table.runs tbody a')) return 'first run';
            return '';
        }""")
        if focused and focused not in reached:
            reached[focused] = presses
            if focused == "search":
                page.shot("phone_keyboard_search_focused")
        if "first run" in reached:
            break
    assert "search" in reached, "Tab never reached the id search"
    assert "first run" in reached, "Tab never reached the first run's link"
    assert reached["search"] < reached["first run"]
    page.shot("phone_keyboard_first_run_focused")

    # And the keyboard works them: type a search, Enter; then Enter on the run's link.
    page.get_by_role("searchbox", name="Search ids").focus()
    page.keyboard.type("ticket-12")
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "q=ticket-12" in url)
    page.wait_for_function(
        "() => document.querySelectorAll('#run-list table.runs tbody a').length === 1")
    page.wait_for_function(QUIET)  # Enter sends two requests: see test_run_list
    page.locator("#run-list table.runs tbody a").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "/runs/" in url)
    assert "support-ticket-12-escalation" in page.locator("h1").inner_text()
