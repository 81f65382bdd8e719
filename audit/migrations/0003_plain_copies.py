"""Audit entries hold plain copies of who acted and where instead of foreign keys, so that
deleting a user, a namespace or (through retention) a run never touches the log.

Existing entries get the copies filled in from the rows they pointed at, once, here: on
PostgreSQL with the append-only trigger lifted for this migration's transaction only (the
statement changes no hashed content: the namespace id stays, the new columns are not covered
by a version 1 entry's hash). They keep content version 1; new entries are version 2.
"""

import django.db.models.deletion  # noqa: F401 - kept for the historical models' sake
from django.db import migrations, models
from django.db.models import OuterRef, Subquery
from django.db.models.functions import Coalesce

LIFT = "ALTER TABLE audit_auditentry DISABLE TRIGGER audit_entry_append_only"
RESTORE = "ALTER TABLE audit_auditentry ENABLE TRIGGER audit_entry_append_only"


def copy_plain_values(apps, schema_editor):
    entry_model = apps.get_model("audit", "AuditEntry")
    namespace_model = apps.get_model("access", "Namespace")
    postgres = schema_editor.connection.vendor == "postgresql"
    if postgres:
        schema_editor.execute(LIFT)
    slug = namespace_model.objects.filter(pk=OuterRef("namespace_id")).values("slug")[:1]
    entry_model.objects.update(
        actor_id_copy=models.F("actor_id"),
        namespace_id_copy=models.F("namespace_id"),
        namespace_slug=Coalesce(Subquery(slug), models.Value("")),
        content_version=1,
    )
    if postgres:
        schema_editor.execute(RESTORE)


class Migration(migrations.Migration):
    dependencies = [
        ("access", "0001_initial"),
        ("audit", "0002_append_only"),
    ]

    operations = [
        migrations.AddField(
            model_name="auditentry",
            name="actor_id_copy",
            field=models.BigIntegerField(blank=True, null=True, verbose_name="actor id"),
        ),
        migrations.AddField(
            model_name="auditentry",
            name="namespace_id_copy",
            field=models.BigIntegerField(blank=True, null=True, verbose_name="namespace id"),
        ),
        migrations.AddField(
            model_name="auditentry",
            name="namespace_slug",
            field=models.CharField(blank=True, default="", max_length=63,
                                   verbose_name="namespace"),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditentry",
            name="content_version",
            field=models.PositiveSmallIntegerField(default=1),
        ),
        migrations.RunPython(copy_plain_values, migrations.RunPython.noop),
        migrations.RemoveIndex(model_name="auditentry", name="audit_namespace_recent"),
        migrations.RemoveField(model_name="auditentry", name="actor"),
        migrations.RemoveField(model_name="auditentry", name="namespace"),
        migrations.AddIndex(
            model_name="auditentry",
            index=models.Index(fields=["namespace_id_copy", "-seq"],
                               name="audit_namespace_recent"),
        ),
        migrations.AlterField(
            model_name="auditentry",
            name="content_version",
            field=models.PositiveSmallIntegerField(default=2),
        ),
    ]
