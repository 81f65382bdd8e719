"""Signing in through the real form (a wrong password first), then signing out."""

from __future__ import annotations

import os
import re

import pytest

ARTIFACTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
                         "test-artifacts")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _shot(page, name: str) -> None:
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.screenshot(path=os.path.join(ARTIFACTS, f"{name}.png"))


def test_a_wrong_password_is_refused_then_the_right_one_signs_in_and_out(
    chromium, live_server, alice
):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        login_url = f"{live_server.url}/accounts/login/"

        # A signed-out visitor is sent to the sign-in form.
        page.goto(f"{live_server.url}/")
        page.wait_for_url(re.compile(r"/accounts/login/\?next=/$"))

        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", "not the password")
        page.click("button[type=submit]")
        error = page.locator("[role=alert]")
        error.wait_for()
        assert "do not match" in error.inner_text()
        assert page.url.startswith(login_url)
        assert page.locator("button", has_text="Sign out").count() == 0
        _shot(page, "sign_in_wrong_password")

        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", "correct horse battery")
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/")
        sign_out = page.get_by_role("button", name="Sign out alice")
        sign_out.wait_for()
        assert page.locator("#run-list").is_visible()
        _shot(page, "sign_in_signed_in")

        sign_out.click()
        page.wait_for_url(login_url)
        assert page.locator("button", has_text="Sign out").count() == 0
        _shot(page, "sign_in_signed_out")

        # The session is really over: the run list asks for a sign-in again.
        page.goto(f"{live_server.url}/")
        page.wait_for_url(re.compile(r"/accounts/login/\?next=/$"))
        assert page.locator("input[name=password]").is_visible()
    finally:
        context.close()
