"""Trigram indexes for case-insensitive substring search over workflow and run ids
(PostgreSQL only; SQLite scans).

`icontains` compiles to UPPER(column::text) LIKE UPPER(%s), so the indexes are on that same
expression: an index on the bare column could not serve it.
"""

from django.db import migrations

INDEXES = {
    "run_workflow_id_upper_trgm": "workflow_id",
    "run_run_id_upper_trgm": "run_id",
}


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, column in INDEXES.items():
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON history_run "
            f"USING gin ((upper({column}::text)) gin_trgm_ops)"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("history", "0002_run_list")]
    operations = [migrations.RunPython(create, drop)]
