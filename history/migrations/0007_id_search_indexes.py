"""Indexes for the run list's id search when the text is where ids begin (PostgreSQL only;
SQLite scans).

The search is a case-insensitive substring match. A trigram index answers it, but slowly when
the text starts with a word that every id starts with (`batch-7-0999`): GIN must read the
posting lists of `BAT`, `ATC`… for every run before the selective trigrams narrow them down.
So `history.run_filters` splits a workflow id match into "the id starts with the text" (a
range scan of the btree below) or "the id without its first character contains it" (the
trigram index below, where a word that begins every id is rare). Both are on the expressions
Django compiles `istartswith` and `icontains` to, so that the indexes can serve them.

The trigram index of migration 0003 on the whole id stays: the admin's search uses it.
"""

from django.db import migrations

INDEXES = {
    "run_workflow_id_upper_prefix": "btree ((upper(workflow_id::text)) text_pattern_ops)",
    "run_workflow_id_tail_upper_trgm": "gin ((upper(substring(workflow_id, 2)::text)) gin_trgm_ops)",
}


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, definition in INDEXES.items():
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON history_run USING {definition}")
    # Statistics of the new expressions, so that the planner estimates id searches from the
    # data rather than from defaults (quick: ANALYZE samples a fixed number of rows).
    schema_editor.execute("ANALYZE history_run")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("history", "0006_labels_index")]
    operations = [migrations.RunPython(create, drop)]
