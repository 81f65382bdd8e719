"""The interventions API: operators' commands, agents' acknowledgements, approvals.

Agent tokens reach only the agent endpoints (the long-poll in `pull_channel` and the ack here);
commands and decisions come from users, with their roles, by session or user token.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import APIView

from access.authentication import AgentPrincipal
from access.roles import Capability
from history.access import get_run_for
from history.models import Run
from interventions import approvals
from interventions.commands import CommandRefused, NotAllowed, acknowledge, request_command
from interventions.models import ApprovalRequest, Command
from interventions.serializers import (
    AckSerializer,
    ApprovalRequestSerializer,
    CommandRequestSerializer,
    CommandSerializer,
    DecideSerializer,
)


def _require_user(request) -> None:
    if isinstance(request.user, AgentPrincipal):
        raise exceptions.PermissionDenied(
            "An agent token cannot send commands or decide approvals; use a user's token."
        )


def _require_agent(request) -> AgentPrincipal:
    if not isinstance(request.user, AgentPrincipal):
        raise exceptions.PermissionDenied("This endpoint is for agent tokens.")
    return request.user


def _run_for(request, run_uuid, need=Capability.VIEW):
    try:
        return get_run_for(request.user, run_uuid, need)
    except Http404:
        raise exceptions.NotFound("No such run.") from None
    except PermissionDenied as exc:
        raise exceptions.PermissionDenied(str(exc)) from None


class RunCommandsView(APIView):
    """`GET` a run's commands, oldest first; `POST` a new one (operators)."""

    @extend_schema(responses=CommandSerializer(many=True))
    def get(self, request, run_uuid):
        _require_user(request)
        run = _run_for(request, run_uuid)
        commands = Command.objects.for_run(run).select_related("run", "requested_by")
        return Response(CommandSerializer(commands, many=True).data)

    @extend_schema(request=CommandRequestSerializer, responses={201: CommandSerializer,
                                                                200: CommandSerializer})
    def post(self, request, run_uuid):
        _require_user(request)
        run = _run_for(request, run_uuid)
        form = CommandRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        try:
            command, created = request_command(
                run, request.user, data["kind"], reason=data["reason"],
                payload=data["payload"], signal_name=data["signal_name"],
                command_id=data["command_id"], request=request,
            )
        except NotAllowed as exc:
            raise exceptions.PermissionDenied(str(exc)) from None
        except CommandRefused as exc:
            return Response({exc.field: [exc.message]}, status=status.HTTP_409_CONFLICT
                            if exc.field == "kind" else status.HTTP_400_BAD_REQUEST)
        return Response(
            CommandSerializer(command).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class CommandAckView(APIView):
    """The agent's verdict on a command it received: `applied` or `rejected`. Repeating the
    same verdict is harmless (200, unchanged)."""

    @extend_schema(request=AckSerializer, responses=CommandSerializer)
    def post(self, request, command_id):
        principal = _require_agent(request)
        command = Command.objects.filter(pk=command_id, agent=principal.agent).first()
        if command is None:
            raise exceptions.NotFound("No such command for this agent.")
        form = AckSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            command, _ = acknowledge(
                command, form.validated_data["status"], form.validated_data["detail"]
            )
        except CommandRefused as exc:
            return Response({exc.field: [exc.message]}, status=status.HTTP_409_CONFLICT)
        return Response(CommandSerializer(command).data)


class ApprovalListView(APIView):
    """Pending approval requests the caller may decide, soonest deadline first."""

    @extend_schema(responses=ApprovalRequestSerializer(many=True))
    def get(self, request):
        _require_user(request)
        pending = ApprovalRequest.objects.decidable_by(request.user).prefetch_related(
            "decisions__user"
        )[:500]
        return Response(ApprovalRequestSerializer(pending, many=True).data)


class ApprovalDecisionView(APIView):
    """Approve or reject a request (a comment is required to reject)."""

    @extend_schema(request=DecideSerializer, responses=ApprovalRequestSerializer)
    def post(self, request, approval_id):
        _require_user(request)
        target = (
            ApprovalRequest.objects.filter(
                pk=approval_id, run__in=Run.objects.visible_to(request.user)
            ).first()
        )
        if target is None:
            raise exceptions.NotFound("No such approval request.")
        form = DecideSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            decided = approvals.decide(
                target, request.user, form.validated_data["decision"],
                form.validated_data["comment"], http=request,
            )
        except approvals.DecisionRefused as exc:
            return Response({exc.field: [exc.message]}, status=exc.http_status)
        return Response(ApprovalRequestSerializer(decided).data)

