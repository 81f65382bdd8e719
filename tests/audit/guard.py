"""Test support: lifting the audit log's append-only guard, which only the table's owner can
do, and which the application never does.

* `guard_lifted()` lets a test rewrite an entry behind the application's back, to check that
  the chain catches it; the test's transaction restores the guard.
* `let_test_flushes_through()` lets the test runner empty the database between transactional
  tests (Django's flush TRUNCATEs on PostgreSQL and DELETEs on SQLite, both refused now).
  It changes nothing outside tests: `manage.py flush` on a real database stays refused.
"""

from __future__ import annotations

import importlib
from contextlib import contextmanager

from django.db import connection, connections

TABLE = "audit_auditentry"
_guard = importlib.import_module("audit.migrations.0004_guard_everywhere")


def lift_statements(vendor: str) -> list[str]:
    if vendor == "postgresql":
        return [f"ALTER TABLE {TABLE} DISABLE TRIGGER USER"]
    return list(_guard.SQLITE_BACKWARD)


def restore_statements(vendor: str) -> list[str]:
    if vendor == "postgresql":
        return [f"ALTER TABLE {TABLE} ENABLE TRIGGER USER"]
    return list(_guard.SQLITE_FORWARD)


@contextmanager
def guard_lifted():
    """Within the caller's (test's) transaction: the guard is off inside, back on after."""
    with connection.cursor() as cursor:
        for statement in lift_statements(connection.vendor):
            cursor.execute(statement)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            for statement in restore_statements(connection.vendor):
                cursor.execute(statement)


def _flushing_through(original):
    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        statements = original(self, style, tables, reset_sequences=reset_sequences,
                              allow_cascade=allow_cascade)
        if TABLE not in tables or not statements:
            return statements
        vendor = self.connection.vendor
        # execute_sql_flush runs the list in one transaction: the guard is back on at its end.
        return [*lift_statements(vendor), *statements, *restore_statements(vendor)]

    sql_flush.flushes_through_the_audit_guard = True
    return sql_flush


def let_test_flushes_through() -> None:
    for database in connections.all():
        operations = type(database.ops)
        if not getattr(operations.sql_flush, "flushes_through_the_audit_guard", False):
            operations.sql_flush = _flushing_through(operations.sql_flush)
