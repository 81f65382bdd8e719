"""What an export covers: one run, the runs of a run list filter, or a namespace over a time
range; read from a query string, checked against what the person may export.

Exporting needs the investigate capability (investigators and admins) in each run's
namespace. A run or namespace the person cannot see at all is a 404, so that other tenants'
ids are never confirmed; one they see without that capability is a 403.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet, Sum
from django.http import Http404, QueryDict

from access.models import NAMESPACE_SLUG, Namespace
from access.roles import Capability
from evidence.models import ExportKind
from history.access import get_run_for
from history.models import Run
from history.run_filters import FilterError, RunFilter, parse_moment
from history.wire import InvalidEvent

# Parameters of the export form itself, never run list filters.
FORM_FIELDS = ("scope", "payloads", "reason", "csrfmiddlewaretoken", "cursor", "filter")


class ScopeError(ValueError):
    """Parameters that do not make a scope; `errors` maps parameter -> problem."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass
class ExportScope:
    kind: str
    params: dict = field(default_factory=dict)

    @classmethod
    def from_query(cls, query: QueryDict) -> ExportScope:
        kind = query.get("scope") or (ExportKind.RUN if query.get("run") else ExportKind.FILTER)
        if kind not in ExportKind.values:
            raise ScopeError({"scope": f"must be one of {', '.join(ExportKind.values)}"})
        if kind == ExportKind.RUN:
            run = query.get("run", "").strip()
            if not run:
                raise ScopeError({"run": "name the run (its UUID)"})
            return cls(kind, {"run": run})
        if kind == ExportKind.NAMESPACE:
            return cls(kind, _namespace_params(query))
        # The confirming form carries the run list's query in one field, `filter`; a link from
        # the run list carries its parameters as they are.
        filters = QueryDict(query["filter"], mutable=True) if "filter" in query else query.copy()
        for name in FORM_FIELDS:
            filters.pop(name, None)
        try:
            RunFilter.from_query(filters)
        except FilterError as exc:
            raise ScopeError(exc.errors) from None
        return cls(kind, {"query": filters.urlencode()})

    def runs(self, user) -> QuerySet:
        """The runs in scope that `user` may export. Http404 / PermissionDenied as above."""
        exportable = Run.objects.visible_to(user, Capability.INVESTIGATE)
        if self.kind == ExportKind.RUN:
            run = get_run_for(user, self.params["run"], need=Capability.INVESTIGATE)
            return exportable.filter(pk=run.pk)
        if self.kind == ExportKind.NAMESPACE:
            namespace = _namespace_for(user, self.params["namespace"])
            runs = exportable.filter(namespace=namespace)
            if self.params.get("until"):
                runs = runs.filter(started_at__lt=datetime.fromisoformat(self.params["until"]))
            if self.params.get("since"):
                since = datetime.fromisoformat(self.params["since"])
                runs = runs.filter(Q(closed_at__isnull=True) | Q(closed_at__gte=since))
            return runs
        filters = RunFilter.from_query(QueryDict(self.params["query"]))
        return filters.apply(exportable)

    def resolve(self, user) -> tuple[list[str], int, list[int]]:
        """(run uuids, their event count, their namespace ids); ScopeError when none or too
        many runs match."""
        runs = self.runs(user).order_by("started_at", "pk")
        limit = settings.EVIDENCE_EXPORT_MAX_RUNS
        rows = list(runs.values_list("uuid", "namespace_id")[: limit + 1])
        if not rows:
            raise ScopeError({"runs": "no run you may export matches"})
        if len(rows) > limit:
            raise ScopeError({"runs": f"more than {limit} runs match; narrow the scope"})
        events = runs.aggregate(total=Sum("event_count"))["total"] or 0
        return [str(u) for u, _ in rows], events, sorted({ns for _, ns in rows})

    def describe(self) -> str:
        if self.kind == ExportKind.RUN:
            return f"run {self.params['run']}"
        if self.kind == ExportKind.NAMESPACE:
            since = self.params.get("since") or "the beginning"
            until = self.params.get("until") or "now"
            return f"namespace {self.params['namespace']}, runs active from {since} to {until}"
        return f"run list filter ?{self.params['query']}" if self.params["query"] else \
            "every run you may export"

    def query_string(self) -> str:
        """The export form's address for this scope."""
        if self.kind == ExportKind.FILTER:
            extra = self.params["query"]
            return f"scope=filter&{extra}" if extra else "scope=filter"
        return urlencode({"scope": self.kind, **self.params})


def _namespace_params(query: QueryDict) -> dict:
    errors = {}
    slug = query.get("namespace", "").strip()
    if not slug:
        errors["namespace"] = "choose a namespace"
    elif not NAMESPACE_SLUG.fullmatch(slug):
        # Never looked up: PostgreSQL refuses a NUL in a text parameter with an error (a 500).
        errors["namespace"] = "must be a namespace's slug (letters, digits, - and _)"
    params = {"namespace": slug}
    moments = {}
    for name in ("since", "until"):
        value = query.get(name, "").strip()
        if value:
            try:
                moments[name] = parse_moment(value).astimezone(UTC)
            except InvalidEvent as exc:
                errors[name] = str(exc)
            else:
                params[name] = moments[name].isoformat()
    if len(moments) == 2 and moments["since"] >= moments["until"]:
        errors["until"] = "must be after since"
    if errors:
        raise ScopeError(errors)
    return params


def _namespace_for(user, slug: str) -> Namespace:
    namespace = Namespace.objects.visible_to(user).filter(slug=slug).first()
    if namespace is None:
        raise Http404("No such namespace.")
    if not Namespace.objects.visible_to(user, Capability.INVESTIGATE).filter(
        pk=namespace.pk
    ).exists():
        raise PermissionDenied(f"Exporting needs the investigate capability in {slug}.")
    return namespace
