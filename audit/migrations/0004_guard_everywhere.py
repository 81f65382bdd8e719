"""The append-only guard, completed: PostgreSQL also refuses TRUNCATE (a statement-level trigger,
since TRUNCATE fires no row triggers), and SQLite refuses UPDATE and DELETE (it has no
TRUNCATE; `DELETE FROM` without a WHERE clause is a DELETE and fires the row trigger).

On SQLite a later migration that rebuilds this table drops these triggers with the old table:
such a migration must run SQLITE_FORWARD again.
"""

from django.db import migrations

POSTGRES_FORWARD = """
CREATE TRIGGER audit_entry_no_truncate
    BEFORE TRUNCATE ON audit_auditentry
    FOR EACH STATEMENT EXECUTE FUNCTION audit_entry_append_only();
"""
POSTGRES_BACKWARD = "DROP TRIGGER IF EXISTS audit_entry_no_truncate ON audit_auditentry;"

SQLITE_FORWARD = [
    """CREATE TRIGGER audit_entry_no_update BEFORE UPDATE ON audit_auditentry
       BEGIN SELECT RAISE(ABORT, 'the audit log is append-only (UPDATE refused)'); END""",
    """CREATE TRIGGER audit_entry_no_delete BEFORE DELETE ON audit_auditentry
       BEGIN SELECT RAISE(ABORT, 'the audit log is append-only (DELETE refused)'); END""",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS audit_entry_no_update",
    "DROP TRIGGER IF EXISTS audit_entry_no_delete",
]


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_FORWARD, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_FORWARD:
            schema_editor.execute(statement, params=None)


def backward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_BACKWARD, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_BACKWARD:
            schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_plain_copies")]
    operations = [migrations.RunPython(forward, backward)]
