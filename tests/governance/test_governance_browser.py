"""The governance page in a real browser: the filters swap the report with htmx and keep the
address, the chart draws, an agent's markup stays text, and the links reach the run page's
event."""

from __future__ import annotations

import pytest
from django.conf import settings

from access.models import Agent, Token
from governance.findings import for_namespace
from history.ingest import ingest_batch
from tests.governance.streams import Stream

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

MARKUP = '<img src=x onerror="window.__xss=1">'


def test_the_governance_page_in_a_browser(browser_as, alice, acme):
    agent = Agent.objects.create(namespace=acme, name="support-bot", owner_user=alice,
                                 allowed_tools=["search_kb"])
    token = Token.issue(agent=agent)[0]
    stream = Stream("wf-browser").start()
    stream.call("search_kb", {"q": 1})
    stream.call(MARKUP, {"q": 2})
    stream.call("search_kb", {"api_key": "sk-proj-" + "Q7vX2mK9pL4wR8tZ3nB6cF1hJ5sD0gYa"})
    outcome = ingest_batch(token, stream.take(),
                           max_attributes_bytes=settings.INGEST_MAX_ATTRIBUTES_BYTES)
    assert outcome.all_accepted
    for_namespace(acme)
    page = browser_as(alice)

    page.goto(f"{page.base_url}/namespaces/acme/governance/")
    page.wait_for_selector("#governance-findings tr.finding")
    assert page.locator("#governance-findings tr.finding").count() == 2
    assert page.locator("svg rect.bar").count() == 31
    assert page.evaluate("typeof window.__xss") == "undefined"
    page.shot("governance-page")

    page.select_option("select[name=rule]", "secret_exposure")
    page.click("form.toolbar button[type=submit]")
    page.wait_for_url("**rule=secret_exposure**")
    page.wait_for_function(
        "document.querySelectorAll('#governance-findings tr.finding').length === 1"
    )
    assert "openai_api_key at /input/api_key" in page.inner_text("#governance-findings")

    page.click("#governance-findings td.events-cell a")
    page.wait_for_url("**/runs/**?event=*#event-*")
    assert page.locator("#event-8").count() == 1


def test_holds_are_placed_and_released_on_the_retention_page(browser_as, alice, acme):
    page = browser_as(alice)
    page.goto(f"{page.base_url}/namespaces/acme/governance/retention/")

    page.fill("input[name=keep_days]", "90")
    page.click("#retention-period button[type=submit]")
    page.wait_for_selector("text=Retention saved.")
    page.fill("textarea[name=reason]", "regulator's request")
    page.click("#legal-holds form.stack button[type=submit]")
    page.wait_for_selector("#legal-holds tr[id^=hold-]")
    assert "every run of acme" in page.inner_text("#legal-holds")
    page.shot("retention-page")
    page.fill("#legal-holds tr[id^=hold-] input[name=reason]", "done")
    page.click("#legal-holds tr[id^=hold-] button[type=submit]")
    page.wait_for_selector("text=Hold released.")
    assert page.locator("#legal-holds tr[id^=hold-]").count() == 0
