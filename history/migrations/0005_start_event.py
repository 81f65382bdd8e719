"""Record which event started a run (start_event_id) instead of a flag, so that the derived
fields do not depend on arrival order when a producer sends more than one workflow.started."""

from django.db import migrations, models
from django.db.models import Min, OuterRef, Subquery


def fill_start_event_id(apps, schema_editor):
    Run = apps.get_model("history", "Run")
    Event = apps.get_model("history", "Event")
    first_start = (
        Event.objects.filter(run=OuterRef("pk"), type="workflow.started")
        .values("run")
        .annotate(first=Min("event_id"))
        .values("first")
    )
    Run.objects.filter(started_from_event=True).update(start_event_id=Subquery(first_start))


class Migration(migrations.Migration):
    dependencies = [("history", "0004_run_list_indexes")]

    operations = [
        migrations.AddField(
            model_name="run",
            name="start_event_id",
            field=models.BigIntegerField(default=0),
        ),
        migrations.RunPython(fill_start_event_id, migrations.RunPython.noop),
        migrations.RemoveField(model_name="run", name="started_from_event"),
    ]
