"""JSON shapes of commands and approval requests in the API."""

from __future__ import annotations

from rest_framework import serializers

from interventions.models import ApprovalDecision, ApprovalRequest, Command
from interventions.vocabulary import OPERATOR_KINDS, Decision


class CommandSerializer(serializers.ModelSerializer):
    run = serializers.UUIDField(source="run.uuid", read_only=True)
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    approval = serializers.UUIDField(source="approval_id", read_only=True, allow_null=True)

    class Meta:
        model = Command
        fields = [
            "id", "run", "kind", "signal_name", "payload", "reason", "requested_by", "approval",
            "connector", "state", "created_at", "dispatched_at", "delivered_at", "finished_at",
            "deadline", "attempts", "last_error", "ack_detail",
        ]
        read_only_fields = fields


class CommandRequestSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=list(OPERATOR_KINDS))
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")
    payload = serializers.JSONField(required=False, default=dict)
    signal_name = serializers.CharField(required=False, allow_blank=True, max_length=200,
                                        default="")
    command_id = serializers.UUIDField(
        required=False, allow_null=True, default=None,
        help_text="Optional idempotency key: repeating a request with the same id returns the "
        "first command instead of creating another.",
    )


class AckSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["applied", "rejected"])
    detail = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")


class DecisionSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = ApprovalDecision
        fields = ["user", "decision", "comment", "created_at"]
        read_only_fields = fields


class ApprovalRequestSerializer(serializers.ModelSerializer):
    run = serializers.UUIDField(source="run.uuid", read_only=True)
    agent = serializers.CharField(source="run.agent.name", read_only=True)
    namespace = serializers.CharField(source="run.namespace.slug", read_only=True)
    decisions = DecisionSerializer(many=True, read_only=True)

    class Meta:
        model = ApprovalRequest
        fields = [
            "id", "run", "namespace", "agent", "request_id", "event_id", "action", "arguments",
            "summary", "on_behalf_of", "asked_risk", "asked_approvals", "risk",
            "required_approvals", "state", "created_at", "deadline", "decided_at",
            "claimed_outcome", "claim_mismatch", "decisions",
        ]
        read_only_fields = fields


class DecideSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=Decision.values)
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")
