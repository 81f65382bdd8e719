"""Mask credentials in the agent's text that approval requests stored before ingest masked it
(action, summary, on_behalf_of; arguments were masked already), the way
interventions.approvals.open_from_event masks it for new requests."""

from django.db import migrations

from history.secrets import scan

# Each with its column's length: a mask can be longer than what it replaces.
FIELDS = {"action": 200, "summary": None, "on_behalf_of": 200}


def mask_stored_text(apps, schema_editor):
    ApprovalRequest = apps.get_model("interventions", "ApprovalRequest")
    for request in ApprovalRequest.objects.only("pk", *FIELDS).iterator(chunk_size=500):
        _, masked = scan({field: getattr(request, field) for field in FIELDS})
        if masked is None:
            continue
        ApprovalRequest.objects.filter(pk=request.pk).update(
            **{field: masked[field][:length] for field, length in FIELDS.items()}
        )


class Migration(migrations.Migration):
    dependencies = [("interventions", "0002_temporal_connector_kind")]

    operations = [migrations.RunPython(mask_stored_text, migrations.RunPython.noop)]
