"""The OpenAPI schema generates without warnings (drf-spectacular's warnings are also deploy
check warnings, which CI treats as failures)."""

from __future__ import annotations

import io

import yaml
from django.core.management import call_command


def test_the_openapi_schema_generates_without_warnings():
    out = io.StringIO()
    call_command("spectacular", "--fail-on-warn", stdout=out)
    schema = yaml.safe_load(out.getvalue())
    assert "/api/v1/runs/{run_uuid}/commands" in schema["paths"]
    assert "/api/v1/approvals/{approval_id}/decision" in schema["paths"]
