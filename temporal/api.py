"""`POST /api/v1/import/temporal`: import a Temporal history file; `GET .../<uuid>`: an
import's state and progress (docs/temporal.md, "Importing").

The file comes as the raw request body (`Content-Type: application/json`) or as the `file`
part of a multipart form; `namespace` (required), `agent`, `workflow_id` and `run_id` as query
parameters or form fields. Users only (session or user token) with the investigate capability.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.parsers import BaseParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from access.authentication import AgentPrincipal
from access.models import NAMESPACE_SLUG
from access.roles import Capability
from access.views import get_namespace_for
from temporal.importer import ImportRefused, start_import
from temporal.models import ImportState, TemporalImport


class TooLarge(exceptions.APIException):
    status_code = 413
    default_detail = "the file is over TEMPORAL_IMPORT_MAX_BYTES"


class RawJSONParser(BaseParser):
    """The body as bytes, read with the import's own size limit (the history is decoded by
    the importer, exactly; Django's 5 MiB body limit is for the ingest API)."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.TEMPORAL_IMPORT_MAX_BYTES
        content = stream.read(limit + 1) if stream is not None else b""
        if len(content) > limit:
            raise TooLarge(f"the body is over the limit of {limit} bytes")
        return {"content": content}


def import_json(imp: TemporalImport, request) -> dict:
    return {
        "uuid": str(imp.uuid),
        "url": request.build_absolute_uri(reverse("api-temporal-import", args=[imp.uuid])),
        "namespace": imp.namespace.slug,
        "agent": imp.agent.name,
        "filename": imp.filename,
        "size": imp.size,
        "state": imp.state,
        "events_total": imp.events_total,
        "events_done": imp.events_done,
        "stored": imp.stored,
        "duplicates": imp.duplicates,
        "runs": imp.runs,
        "error": imp.error or None,
    }


def _namespace(request, slug: str | None):
    if isinstance(request.user, AgentPrincipal):
        raise exceptions.PermissionDenied("An agent token cannot import histories; use a "
                                          "user's token.")
    if not slug:
        raise exceptions.ValidationError({"detail": "namespace: is required (a slug)"})
    if not NAMESPACE_SLUG.fullmatch(slug):
        # Never looked up: PostgreSQL refuses a NUL in a text parameter with an error (a 500).
        raise exceptions.ValidationError({"detail": "namespace: must be a namespace's slug"})
    try:
        return get_namespace_for(request.user, slug, need=Capability.INVESTIGATE)
    except Http404:
        raise exceptions.NotFound("namespace: no such namespace") from None
    except PermissionDenied as exc:
        raise exceptions.PermissionDenied(str(exc)) from None


PARAMETERS = [
    OpenApiParameter("namespace", str, required=True, description="the namespace's slug"),
    OpenApiParameter("agent", str, description="the agent the runs belong to"),
    OpenApiParameter("workflow_id", str, description="for histories that do not name it"),
    OpenApiParameter("run_id", str, description="for a history that does not name it"),
]


class TemporalImportView(APIView):
    parser_classes = [RawJSONParser, MultiPartParser]

    @extend_schema(parameters=PARAMETERS, request={"application/json": OpenApiTypes.OBJECT,
                                                   "multipart/form-data": OpenApiTypes.OBJECT},
                   responses={200: OpenApiTypes.OBJECT, 202: OpenApiTypes.OBJECT})
    def post(self, request):
        def option(name: str) -> str:
            value = request.query_params.get(name) or (
                request.data.get(name) if hasattr(request.data, "getlist") else None
            )
            return str(value or "").strip()

        namespace = _namespace(request, option("namespace"))
        content, filename = self._content(request)
        try:
            imp = start_import(
                namespace=namespace, user=request.user, content=content, filename=filename,
                agent_name=option("agent"), workflow_id=option("workflow_id"),
                run_id=option("run_id"), request=request,
            )
        except ImportRefused as exc:
            return Response({"detail": exc.message}, status=exc.status)
        body = import_json(imp, request)
        if imp.state == ImportState.FAILED:
            return Response({"detail": imp.error, "import": body},
                            status=imp.error_status or 400)
        if imp.state == ImportState.DONE:
            return Response(body, status=status.HTTP_200_OK)
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})

    def _content(self, request) -> tuple[bytes, str]:
        if not request.content_type.startswith("multipart/form-data"):
            data = request.data  # an empty body parses to an empty dict
            content = data.get("content") if isinstance(data, dict) else None
            if not content:
                raise exceptions.ValidationError({"detail": "the body is empty: send the "
                                                  "history JSON"})
            return content, ""
        upload = request.FILES.get("file")
        if upload is None:
            raise exceptions.ValidationError({"detail": "file: send the history as the request "
                                              "body (application/json) or a multipart `file`"})
        if upload.size > settings.TEMPORAL_IMPORT_MAX_BYTES:
            raise TooLarge(f"file: over the limit of {settings.TEMPORAL_IMPORT_MAX_BYTES} bytes")
        return upload.read(), upload.name or ""


class TemporalImportDetailView(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, import_uuid):
        if isinstance(request.user, AgentPrincipal):
            raise exceptions.PermissionDenied("This endpoint is for users.")
        imp = TemporalImport.objects.visible_to(request.user).select_related(
            "namespace", "agent"
        ).defer("content").filter(uuid=import_uuid).first()
        if imp is None:
            raise exceptions.NotFound("No such import.")
        return Response(import_json(imp, request))
