"""Whatever an agent sends is text: markup in a workflow id, a run id, an identity or the
attributes is shown as written and never runs, on full pages and in htmx swaps alike."""

from __future__ import annotations

import pytest
from django.conf import settings

from access.models import Token
from history.ingest import ingest_batch
from history.models import Run
from tests.builders import event

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WORKFLOW_ID = '<img src=x onerror="window.__xss=1">'
RUN_ID = "<script>window.__xss=2</script>"
IDENTITY = "<svg onload=window.__xss=3>"
NOTE = "</pre><img src=y onerror=window.__xss=4>"
IDS = {"workflow_id": WORKFLOW_ID, "run_id": RUN_ID}

INJECTED = """() => ({
    xss: typeof window.__xss,
    imgs: document.querySelectorAll('main img, main svg[onload]').length,
    scripts: [...document.querySelectorAll('script')].filter(s => s.textContent.includes('__xss'))
        .length,
})"""
CLEAN = {"xss": "undefined", "imgs": 0, "scripts": 0}


def _ingest(token: Token, events: list[dict]) -> None:
    outcome = ingest_batch(token, events, max_attributes_bytes=settings.INGEST_MAX_ATTRIBUTES_BYTES)
    assert outcome.all_accepted, [r.as_dict() for r in outcome.results]


def test_agent_supplied_markup_is_shown_as_text_and_never_runs(browser_as, alice, support_agent):
    token = Token.issue(agent=support_agent)[0]
    _ingest(token, [
        event(1, "workflow.started", attributes={"labels": {"team": "<b>ops</b>"}}, **IDS),
        event(2, "activity.scheduled", identity=IDENTITY,
              attributes={"activity_type": "<i onmouseover=window.__xss=5>x</i>", "kind": "tool"},
              **IDS),
        event(3, "decision.made", attributes={"note": NOTE}, **IDS),
    ])
    run = Run.objects.get(workflow_id=WORKFLOW_ID)
    page = browser_as(alice)

    # The run list, first as rendered, then as htmx swaps it after a search.
    link = page.locator("#run-list table.runs tbody a").first
    link.wait_for()
    assert link.inner_text() == WORKFLOW_ID
    search = page.get_by_role("searchbox", name="Search ids")
    search.fill("onerror")
    search.press("Enter")
    page.wait_for_url(lambda url: "q=onerror" in url)
    page.locator("#run-list table.runs tbody a", has_text=WORKFLOW_ID).wait_for()
    assert page.evaluate(INJECTED) == CLEAN
    page.shot("markup_run_list")

    # The run page: header, waterfall, history and the page title.
    page.locator("#run-list table.runs tbody a").first.click()
    page.wait_for_url(f"{page.base_url}/runs/{run.uuid}/")
    page.locator("#history-rows > tr").first.wait_for()
    assert page.locator("#run-header h1").inner_text() == f"{WORKFLOW_ID} / {RUN_ID}"
    assert page.title().startswith(WORKFLOW_ID)
    assert IDENTITY in page.locator("#history-rows").inner_text()
    assert "team=<b>ops</b>" in page.locator("#run-header").inner_text()

    # The full view, and the event panel loaded through htmx.
    page.locator("#history nav.tabs").get_by_role("link", name="Full").click()
    page.locator("#history-rows > tr#event-3 a[hx-get]").click()
    page.locator("#event-panel #event-title").wait_for()
    assert NOTE in page.locator("#event-panel pre.json").inner_text()
    assert page.evaluate(INJECTED) == CLEAN

    # A live event: the tail's rows and its out-of-band header swap are text too.
    _ingest(token, [event(4, "decision.made", identity=IDENTITY, attributes={"note": NOTE},
                          **IDS)])
    page.locator("#tail-rows > tr#event-4").wait_for()
    assert page.locator("#run-header h1").inner_text() == f"{WORKFLOW_ID} / {RUN_ID}"
    assert NOTE in page.locator("#tail-rows > tr#event-4").inner_text()
    page.wait_for_load_state("load")
    assert page.evaluate(INJECTED) == CLEAN
    page.shot("markup_run_page")
