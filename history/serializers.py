"""JSON shapes of runs and events in the read API."""

from __future__ import annotations

from rest_framework import serializers

from history.models import Event, Run


class RunSerializer(serializers.ModelSerializer):
    namespace = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    agent = serializers.SlugRelatedField(slug_field="name", read_only=True)
    has_gaps = serializers.BooleanField(read_only=True)

    class Meta:
        model = Run
        fields = [
            "uuid", "namespace", "agent", "workflow_id", "run_id", "workflow_type", "status",
            "started_at", "closed_at", "event_count", "last_event_id", "contiguous_through",
            "has_gaps", "head_hash", "events_with_secrets", "labels", "updated_at",
        ]
        read_only_fields = fields


class RunDetailSerializer(RunSerializer):
    missing_ranges = serializers.SerializerMethodField(
        help_text="Up to 100 ranges [first, last] of event ids not received yet."
    )

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "missing_ranges"]
        read_only_fields = fields

    def get_missing_ranges(self, run: Run) -> list[list[int]]:
        return [list(pair) for pair in run.missing_ranges()]


class EventSerializer(serializers.ModelSerializer):
    time = serializers.CharField(source="time_text", help_text="The time exactly as sent.")
    timestamp = serializers.DateTimeField(source="time")
    attributes = serializers.SerializerMethodField(
        help_text="Masked where a secret was found, unless the raw form was asked for."
    )
    masked = serializers.SerializerMethodField()

    class Meta:
        model = Event
        fields = [
            "event_id", "type", "time", "timestamp", "identity", "refs", "attributes",
            "masked", "secret_findings", "received_at", "received_seq", "chain_hash",
        ]
        read_only_fields = fields

    def get_attributes(self, event: Event) -> dict:
        return event.attributes_for(raw=self.context.get("raw", False))

    def get_masked(self, event: Event) -> bool:
        return event.masked_attributes is not None and not self.context.get("raw", False)


class IngestItemSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    status = serializers.ChoiceField(choices=["stored", "duplicate", "conflict", "invalid"])
    error = serializers.CharField(required=False)


class IngestRunSerializer(serializers.Serializer):
    uuid = serializers.UUIDField()
    workflow_id = serializers.CharField()
    run_id = serializers.CharField()
    status = serializers.CharField()
    last_event_id = serializers.IntegerField()
    contiguous_through = serializers.IntegerField()
    head_hash = serializers.CharField()


class IngestResponseSerializer(serializers.Serializer):
    stored = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    conflicts = serializers.IntegerField()
    invalid = serializers.IntegerField()
    runs = IngestRunSerializer(many=True)
    results = IngestItemSerializer(
        many=True, required=False, help_text="One per item; present on 207 only."
    )
