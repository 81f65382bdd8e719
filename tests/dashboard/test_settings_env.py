"""Settings from the environment: the parsing helpers, the database URL, the refusal to start
without a SECRET_KEY in production, and the home page behind the sign-in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from dashboard.env import env_bool, env_int, env_list, env_str, parse_database_url

PROJECT = Path(__file__).resolve().parents[2]
BASE = Path("/srv/flightdeck")


# --- env_bool, env_int, env_list ------------------------------------------------------------


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "yes", "on", " True "])
def test_env_bool_reads_true(monkeypatch, value):
    monkeypatch.setenv("FD_FLAG", value)

    assert env_bool("FD_FLAG", False) is True


@pytest.mark.parametrize("value", ["0", "false", "No", "off", ""])
def test_env_bool_reads_false(monkeypatch, value):
    monkeypatch.setenv("FD_FLAG", value)

    assert env_bool("FD_FLAG", True) is False


def test_env_bool_falls_back_to_the_default_when_unset(monkeypatch):
    monkeypatch.delenv("FD_FLAG", raising=False)

    assert env_bool("FD_FLAG", True) is True


def test_env_bool_rejects_anything_else_naming_the_variable(monkeypatch):
    monkeypatch.setenv("FD_FLAG", "maybe")

    with pytest.raises(ImproperlyConfigured, match="FD_FLAG"):
        env_bool("FD_FLAG", False)


def test_env_int_reads_an_integer(monkeypatch):
    monkeypatch.setenv("FD_COUNT", " 42 ")

    assert env_int("FD_COUNT", 7) == 42


@pytest.mark.parametrize("value", [None, "", "  "])
def test_env_int_falls_back_to_the_default_when_unset_or_empty(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("FD_COUNT", raising=False)
    else:
        monkeypatch.setenv("FD_COUNT", value)

    assert env_int("FD_COUNT", 7) == 7


@pytest.mark.parametrize("value", ["4x", "1.5", "ten", "0x10"])
def test_env_int_rejects_a_non_integer_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("FD_COUNT", value)

    with pytest.raises(ImproperlyConfigured, match="FD_COUNT"):
        env_int("FD_COUNT", 7)


def test_env_int_rejects_a_value_below_the_minimum_naming_the_variable(monkeypatch):
    monkeypatch.setenv("FD_COUNT", "512")

    with pytest.raises(ImproperlyConfigured, match=r"FD_COUNT.*1024"):
        env_int("FD_COUNT", 2048, minimum=1024)


def test_env_int_accepts_the_minimum(monkeypatch):
    monkeypatch.setenv("FD_COUNT", "1024")

    assert env_int("FD_COUNT", 2048, minimum=1024) == 1024


def test_env_list_splits_on_commas_and_drops_blanks(monkeypatch):
    monkeypatch.setenv("FD_HOSTS", " a.example, b.example,, ")

    assert env_list("FD_HOSTS", ["localhost"]) == ["a.example", "b.example"]


def test_env_list_falls_back_to_a_copy_of_the_default(monkeypatch):
    monkeypatch.delenv("FD_HOSTS", raising=False)
    default = ["localhost"]

    hosts = env_list("FD_HOSTS", default)
    hosts.append("evil.example")

    assert default == ["localhost"]


def test_env_list_reads_an_empty_value_as_an_empty_list(monkeypatch):
    monkeypatch.setenv("FD_HOSTS", "")

    assert env_list("FD_HOSTS", ["localhost"]) == []


def test_env_str_keeps_an_empty_value(monkeypatch):
    monkeypatch.setenv("FD_NAME", "")

    assert env_str("FD_NAME", "default") == ""


# --- parse_database_url ---------------------------------------------------------------------


def test_a_sqlite_url_with_three_slashes_is_relative_to_the_project():
    config = parse_database_url("sqlite:///var/flightdeck.sqlite3", base_dir=BASE)

    assert config["ENGINE"] == "django.db.backends.sqlite3"
    assert config["NAME"] == str(BASE / "var" / "flightdeck.sqlite3")


def test_a_sqlite_url_with_four_slashes_is_absolute():
    config = parse_database_url("sqlite:////data/flightdeck.sqlite3", base_dir=BASE)

    assert config["NAME"] == "/data/flightdeck.sqlite3"


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///"])
def test_a_sqlite_url_without_a_path_is_refused(url):
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        parse_database_url(url, base_dir=BASE)


def test_a_postgres_url_gives_every_connection_setting():
    config = parse_database_url(
        "postgres://flight%40deck:s3cr%2Ft@db.example:6543/flight_db"
        "?sslmode=require&connect_timeout=5",
        base_dir=BASE,
    )

    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert (config["NAME"], config["USER"], config["PASSWORD"]) == (
        "flight_db", "flight@deck", "s3cr/t",
    )
    assert (config["HOST"], config["PORT"]) == ("db.example", "6543")
    assert config["OPTIONS"] == {"sslmode": "require", "connect_timeout": "5"}


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "pgsql", "POSTGRES"])
def test_every_postgres_scheme_is_understood(scheme):
    config = parse_database_url(f"{scheme}://db.example/flightdeck", base_dir=BASE)

    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert (config["NAME"], config["USER"], config["PASSWORD"], config["PORT"]) == (
        "flightdeck", "", "", "",
    )


def test_a_postgres_url_without_a_host_uses_the_local_socket():
    config = parse_database_url("postgres:///flightdeck", base_dir=BASE)

    assert (config["HOST"], config["NAME"]) == ("", "flightdeck")


def test_a_postgres_url_without_a_database_name_is_refused():
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL") as raised:
        parse_database_url("postgres://user:hunter2@db.example:5432/", base_dir=BASE)

    assert "hunter2" not in str(raised.value)


def test_an_unsupported_scheme_is_refused_without_echoing_the_password():
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL") as raised:
        parse_database_url("mysql://root:hunter2@db.example/flightdeck", base_dir=BASE)

    assert "hunter2" not in str(raised.value)
    assert "mysql" in str(raised.value)


def test_a_bad_port_is_refused_naming_database_url_without_the_password():
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL") as raised:
        parse_database_url("postgres://user:hunter2@db.example:port/flightdeck", base_dir=BASE)

    assert "hunter2" not in str(raised.value)


# --- the settings module --------------------------------------------------------------------


def _import_settings(**overrides: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG")}
    environment.update(overrides)
    return subprocess.run(
        [sys.executable, "-c", "import dashboard.settings"],
        cwd=PROJECT, env=environment, capture_output=True, text=True, timeout=120, check=False,
    )


def test_settings_refuse_to_load_without_a_secret_key_when_debug_is_off():
    result = _import_settings(DEBUG="0")

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY" in result.stderr


def test_settings_refuse_to_load_without_a_secret_key_when_debug_is_unset():
    result = _import_settings()

    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_settings_load_with_a_secret_key_when_debug_is_off():
    result = _import_settings(DEBUG="0", SECRET_KEY="a-production-secret-" + "x" * 40)

    assert result.returncode == 0, result.stderr


def test_settings_refuse_a_debug_value_that_is_not_a_boolean():
    result = _import_settings(DEBUG="sometimes", SECRET_KEY="s" * 50)

    assert result.returncode != 0
    assert "DEBUG" in result.stderr


def test_settings_refuse_an_ingest_limit_below_its_minimum():
    result = _import_settings(DEBUG="0", SECRET_KEY="s" * 50, INGEST_MAX_BODY_BYTES="10")

    assert result.returncode != 0
    assert "INGEST_MAX_BODY_BYTES" in result.stderr


# --- the home page --------------------------------------------------------------------------


def test_the_home_page_sends_an_anonymous_visitor_to_sign_in(client, db):
    response = client.get("/")

    assert response.status_code == 302
    assert response.url.startswith("/accounts/login/")


def test_the_home_page_shows_alices_namespace(client, alice, globex):
    client.force_login(alice)

    response = client.get("/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "acme" in page
    assert "globex" not in page


def test_the_home_page_shows_charlie_only_his_namespace(client, charlie, acme):
    client.force_login(charlie)

    page = client.get("/").content.decode()

    assert "globex" in page
    assert "acme" not in page
