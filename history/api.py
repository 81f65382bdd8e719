"""The history API: `POST /api/v1/ingest` for agents, and read-only runs and events."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from access.authentication import AgentPrincipal
from access.permissions import has_capability
from access.roles import Capability
from history.ingest import CONFLICT, DUPLICATE, INVALID, STORED, RunOfAnotherAgent, ingest_batch
from history.models import Run
from history.run_filters import FilterError, RunFilter
from history.serializers import (
    EventSerializer,
    IngestResponseSerializer,
    RunDetailSerializer,
    RunSerializer,
)
from history.wire import decode_json


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"


def _decode_envelope(request) -> list:
    """The `events` array of the body, or a 400/413 that names the problem."""
    limit = settings.INGEST_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise exceptions.ParseError("Content-Length is not a number.") from None
    if declared > limit:
        raise PayloadTooLarge(f"body: {declared} bytes is over the limit of {limit} bytes")
    try:
        body = request.body
    except RequestDataTooBig:
        raise PayloadTooLarge(f"body: over the limit of {limit} bytes") from None
    if len(body) > limit:
        raise PayloadTooLarge(f"body: {len(body)} bytes is over the limit of {limit} bytes")
    try:
        document = decode_json(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise exceptions.ParseError(f"body: not valid JSON ({exc})") from None
    if not isinstance(document, dict) or "events" not in document:
        raise exceptions.ParseError('body: must be an object {"events": [...]}')
    extra = set(document) - {"events"}
    if extra:
        raise exceptions.ParseError(f"body.{sorted(extra)[0]}: is not a field of the envelope")
    events = document["events"]
    if not isinstance(events, list):
        raise exceptions.ParseError("events: must be an array")
    if not events:
        raise exceptions.ParseError("events: must not be empty")
    if len(events) > settings.INGEST_MAX_EVENTS:
        raise PayloadTooLarge(
            f"events: {len(events)} events is over the limit of {settings.INGEST_MAX_EVENTS}"
        )
    return events


class IngestView(APIView):
    """Append events to runs. Only agent tokens may call it; each event lands in a run of the
    token's agent, identified by (namespace, workflow_id, run_id)."""

    parser_classes: list = []  # the body is read and bounded by _decode_envelope

    @extend_schema(
        request=inline_serializer(
            "IngestRequest", {"events": serializers.ListField(child=serializers.DictField())}
        ),
        responses={200: IngestResponseSerializer, 207: IngestResponseSerializer},
        description="See docs/event-schema.md for every field and limit.",
    )
    def post(self, request):
        principal = request.user
        if not isinstance(principal, AgentPrincipal):
            raise exceptions.PermissionDenied("ingest needs an agent token")
        events = _decode_envelope(request)
        try:
            outcome = ingest_batch(
                principal.token,
                events,
                max_attributes_bytes=settings.INGEST_MAX_ATTRIBUTES_BYTES,
            )
        except RunOfAnotherAgent as exc:
            raise exceptions.PermissionDenied(f"{exc}; nothing in this batch was stored") from None
        body = {
            "stored": outcome.count(STORED),
            "duplicates": outcome.count(DUPLICATE),
            "conflicts": outcome.count(CONFLICT),
            "invalid": outcome.count(INVALID),
            "runs": [
                {
                    "uuid": str(run.uuid),
                    "workflow_id": run.workflow_id,
                    "run_id": run.run_id,
                    "status": run.status,
                    "last_event_id": run.last_event_id,
                    "contiguous_through": run.contiguous_through,
                    "head_hash": run.head_hash,
                }
                for run in outcome.runs
            ],
        }
        if outcome.all_accepted:
            return Response(body, status=status.HTTP_200_OK)
        body["results"] = [result.as_dict() for result in outcome.results]
        return Response(body, status=status.HTTP_207_MULTI_STATUS)


RUN_FILTERS = [
    OpenApiParameter("namespace", str, description="Namespace slug."),
    OpenApiParameter("agent", str, description="Agent name."),
    OpenApiParameter("workflow_type", str),
    OpenApiParameter("status", str, description="One status, or several separated by commas."),
    OpenApiParameter("workflow_id", str, description="Prefix of the workflow id."),
    OpenApiParameter("q", str, description="Substring of workflow id or run id, or a run UUID."),
    OpenApiParameter("owner", str, description="User name or group name owning the agent."),
    OpenApiParameter("started_after", OpenApiTypes.DATETIME),
    OpenApiParameter("started_before", OpenApiTypes.DATETIME),
    OpenApiParameter("label", str, many=True, description="key=value; repeat to require all."),
    OpenApiParameter("sort", str, enum=["started", "closed"],
                     description="Newest start first (default), or open runs then newest close."),
    OpenApiParameter("limit", int, description="Page size, 1 to 500 (default 50)."),
    OpenApiParameter("cursor", str, description="The `next` cursor of the previous page."),
]


class RunViewSet(viewsets.ReadOnlyModelViewSet):
    """Runs the caller may see: a user's through namespace roles, an agent token's own."""

    lookup_field = "uuid"
    lookup_value_regex = "[0-9a-fA-F-]{36}"
    pagination_class = None  # keyset pages come from RunFilter.page, as on the run list page

    def get_serializer_class(self):
        return RunDetailSerializer if self.action == "retrieve" else RunSerializer

    def get_queryset(self):
        return Run.objects.visible_to(self.request.user).select_related("namespace", "agent")

    @extend_schema(
        parameters=RUN_FILTERS,
        responses=inline_serializer(
            "RunPage",
            {
                "next": serializers.CharField(allow_null=True),
                "results": RunSerializer(many=True),
            },
        ),
    )
    def list(self, request, *args, **kwargs):
        limit = _int_param(request, "limit", default=50, minimum=1, maximum=500)
        try:
            filters = RunFilter.from_query(request.query_params)
            page, cursor = filters.page(
                filters.apply(self.get_queryset()), request.query_params.get("cursor", ""), limit
            )
        except FilterError as exc:
            raise exceptions.ValidationError(exc.errors) from None
        next_url = None
        if cursor:
            query = request.query_params.copy()
            query["cursor"] = cursor
            next_url = request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
        return Response({"next": next_url, "results": RunSerializer(page, many=True).data})

    @extend_schema(
        parameters=[
            OpenApiParameter("after", int, description="Return events with a greater event_id."),
            OpenApiParameter("limit", int, description="At most this many (1 to 1000)."),
            OpenApiParameter(
                "raw", bool, description="Unmasked attributes (investigators, admins, the agent)."
            ),
        ],
        responses=inline_serializer(
            "EventPage",
            {
                "events": EventSerializer(many=True),
                "next_after": serializers.IntegerField(allow_null=True),
            },
        ),
    )
    @action(detail=True, methods=["get"])
    def events(self, request, uuid=None):
        """A run's events in event_id order, keyset-paged: pass the last event_id as `after`."""
        run = self.get_object()
        after = _int_param(request, "after", default=0, minimum=0)
        limit = _int_param(request, "limit", default=200, minimum=1, maximum=1000)
        raw = request.query_params.get("raw", "").lower() in ("1", "true", "yes")
        if raw and not self._may_see_raw(run):
            raise exceptions.PermissionDenied(
                "raw payloads need the investigator or admin role in this namespace"
            )
        page = list(run.events.in_order(after=after)[: limit + 1])
        more = len(page) > limit
        page = page[:limit]
        data = EventSerializer(page, many=True, context={"raw": raw}).data
        return Response(
            {"events": data, "next_after": page[-1].event_id if more else None}
        )

    def _may_see_raw(self, run: Run) -> bool:
        principal = self.request.user
        if isinstance(principal, AgentPrincipal):
            return principal.agent.pk == run.agent_id
        return has_capability(principal, run.namespace_id, Capability.INVESTIGATE)


def _int_param(request, name: str, *, default: int, minimum: int, maximum: int | None = None):
    value = request.query_params.get(name)
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except ValueError:
        raise exceptions.ValidationError({name: f"{value!r} is not an integer"}) from None
    if number < minimum or (maximum is not None and number > maximum):
        bound = f"from {minimum} to {maximum}" if maximum is not None else f"{minimum} or more"
        raise exceptions.ValidationError({name: f"must be {bound}"})
    return number
