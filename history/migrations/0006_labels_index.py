"""A GIN index for the run list's label filter (labels @> {"key": "value"}), PostgreSQL only."""

from django.db import migrations


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "CREATE INDEX IF NOT EXISTS run_labels_gin ON history_run "
            "USING gin (labels jsonb_path_ops)"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS run_labels_gin")


class Migration(migrations.Migration):
    dependencies = [("history", "0005_start_event")]
    operations = [migrations.RunPython(create, drop)]
