"""The run list's filters, shared by the list page and `GET /api/v1/runs`.

`RunFilter.from_query(params)` validates a query string into filters (errors name the
parameter), `apply(runs)` narrows a queryset, and `page(runs, cursor)` returns one keyset page
ordered by start or close time.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from django.db import connection
from django.db.models import CharField, F, Func, Q, QuerySet, TextField
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Substr
from django.db.models.lookups import IContains
from django.http import QueryDict

from access.models import Agent, Namespace
from history.vocabulary import RunStatus
from history.wire import InvalidEvent, parse_time

SORTS = ("started", "closed")
MAX_QUERY_LENGTH = 255


class IdTail(Func):
    """A text without its first character: the expression migration 0007 indexes."""

    template = "SUBSTRING(%(expressions)s, 2)"
    output_field = CharField()


class FilterError(ValueError):
    """A query parameter that does not parse; `errors` maps parameter -> problem."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def parse_moment(value: str) -> datetime:
    """RFC 3339 with a zone; or, as a browser's date and datetime-local inputs send them, a
    date or a date and time without a zone, read as UTC."""
    try:
        return parse_time(value)
    except InvalidEvent:
        pass
    for pattern in ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.strptime(value, pattern).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise InvalidEvent("must be a date, or a time in RFC 3339 (e.g. 2026-01-31T12:00:00Z)")


@dataclass
class RunFilter:
    namespace: str = ""
    agent: str = ""
    workflow_type: str = ""
    statuses: list[str] = field(default_factory=list)
    owner: str = ""
    started_after: datetime | None = None
    started_before: datetime | None = None
    labels: list[tuple[str, str]] = field(default_factory=list)
    q: str = ""
    workflow_id_prefix: str = ""
    sort: str = "started"

    @classmethod
    def from_query(cls, params: QueryDict) -> RunFilter:
        errors: dict[str, str] = {}
        for name, values in params.lists():
            if any("\x00" in value for value in values):
                # PostgreSQL cannot take U+0000 in a text parameter; no id or name holds one.
                raise FilterError({name: "must not contain the NUL character"})
        found = cls(
            namespace=params.get("namespace", "").strip(),
            agent=params.get("agent", "").strip(),
            workflow_type=params.get("workflow_type", "").strip(),
            owner=params.get("owner", "").strip(),
            q=params.get("q", "").strip(),
            workflow_id_prefix=params.get("workflow_id", "").strip(),
        )
        if len(found.q) > MAX_QUERY_LENGTH:
            errors["q"] = f"must be at most {MAX_QUERY_LENGTH} characters"
        for value in params.getlist("status"):
            for status in value.split(","):
                status = status.strip()
                if not status:
                    continue
                if status not in RunStatus.values:
                    choices = ", ".join(RunStatus.values)
                    errors["status"] = f"{status!r} is not a run status ({choices})"
                elif status not in found.statuses:
                    found.statuses.append(status)
        for name in ("started_after", "started_before"):
            value = params.get(name, "").strip()
            if value:
                try:
                    setattr(found, name, parse_moment(value))
                except InvalidEvent as exc:
                    errors[name] = str(exc)
        for label in params.getlist("label"):
            label = label.strip()
            if not label:
                continue
            key, sep, value = label.partition("=")
            if not sep or not key.strip():
                errors["label"] = f"{label!r} is not key=value"
            else:
                found.labels.append((key.strip(), value.strip()))
        sort = params.get("sort", "started") or "started"
        if sort not in SORTS:
            errors["sort"] = f"{sort!r} is not one of {', '.join(SORTS)}"
        else:
            found.sort = sort
        if errors:
            raise FilterError(errors)
        return found

    def apply(self, runs: QuerySet, *, include_status: bool = True) -> QuerySet:
        # Names are resolved to ids first (small tables), so that the run query filters on its
        # own indexed columns instead of joining namespaces, agents, users and groups.
        if self.namespace:
            runs = runs.filter(
                namespace_id__in=list(
                    Namespace.objects.filter(slug=self.namespace).values_list("pk", flat=True)
                )
            )
        if self.agent:
            runs = runs.filter(
                agent_id__in=list(
                    Agent.objects.filter(name=self.agent).values_list("pk", flat=True)
                )
            )
        if self.workflow_type:
            runs = runs.filter(workflow_type=self.workflow_type)
        if self.owner:
            owned = Agent.objects.filter(
                Q(owner_user__username=self.owner) | Q(owner_group__name=self.owner)
            )
            runs = runs.filter(agent_id__in=list(owned.values_list("pk", flat=True)))
        if self.workflow_id_prefix:
            runs = runs.filter(workflow_id__startswith=self.workflow_id_prefix)
            if connection.vendor == "sqlite":  # its LIKE ignores case; ids are case-sensitive
                prefix = Substr("workflow_id", 1, len(self.workflow_id_prefix))
                runs = runs.alias(id_prefix=prefix).filter(id_prefix=self.workflow_id_prefix)
        if self.q:
            runs = runs.filter(self._id_match())
        if include_status and self.statuses:
            runs = runs.filter(status__in=self.statuses)
        if self.started_after is not None:
            runs = runs.filter(started_at__gte=self.started_after)
        if self.started_before is not None:
            runs = runs.filter(started_at__lt=self.started_before)
        for number, (key, value) in enumerate(self.labels):
            if connection.vendor == "postgresql":
                # labels @> {"key": "value"}: served by the GIN index of migration 0006.
                runs = runs.filter(labels__contains={key: value})
                continue
            alias = f"label_{number}"
            # Cast to text: a bare key transform compares as JSON, which SQLite cannot do
            # with a plain string.
            text = Cast(KeyTextTransform(key, "labels"), output_field=TextField())
            runs = runs.alias(**{alias: text}).filter(**{alias: value})
        return runs

    def _id_match(self) -> Q:
        """Runs whose workflow id or run id contains `q` (case-insensitive), or whose UUID it
        is."""
        if connection.vendor == "postgresql":
            # The same match as workflow_id__icontains, split so that PostgreSQL can take
            # each half from an index of migration 0007: the id starts with q (a btree range)
            # or the id without its first character contains q (trigrams). Text typed from
            # the start of an id begins with words every id shares, whose trigrams make the
            # index of the whole id read a posting list of every run (40 ms at 1M runs).
            tail = IContains(IdTail("workflow_id"), self.q)
            workflow = Q(workflow_id__istartswith=self.q) | Q(tail)
        else:
            workflow = Q(workflow_id__icontains=self.q)
        match = workflow | Q(run_id__icontains=self.q)
        with contextlib.suppress(ValueError):
            match |= Q(uuid=uuid.UUID(self.q))
        return match

    # --- keyset pages ------------------------------------------------------------------

    def page(self, runs: QuerySet, cursor: str, size: int) -> tuple[list, str | None]:
        """One page after `cursor` (opaque, from a previous page of the same sort; "" for the
        first) and the cursor of the next page, or None at the end. Raises FilterError for a
        cursor that is not one of ours."""
        position = _decode_cursor(cursor, self.sort) if cursor else None
        if self.sort == "started":
            runs = runs.order_by("-started_at", "-id")
            if position is not None:
                moment, pk = position
                if moment is None:
                    raise FilterError({"cursor": "is not a cursor from this list"})
                runs = runs.filter(Q(started_at__lt=moment) | Q(started_at=moment, id__lt=pk))
        else:
            # Open runs (no close time) first, newest first, then closed runs by close time.
            runs = runs.order_by(F("closed_at").desc(nulls_first=True), "-id")
            if position is not None:
                moment, pk = position
                if moment is None:
                    runs = runs.filter(
                        Q(closed_at__isnull=True, id__lt=pk) | Q(closed_at__isnull=False)
                    )
                else:
                    runs = runs.filter(Q(closed_at__lt=moment) | Q(closed_at=moment, id__lt=pk))
        rows = list(runs[: size + 1])
        if len(rows) <= size:
            return rows, None
        rows = rows[:size]
        last = rows[-1]
        key = last.started_at if self.sort == "started" else last.closed_at
        return rows, _encode_cursor(self.sort, key, last.pk)


def _encode_cursor(sort: str, moment: datetime | None, pk: int) -> str:
    payload = [sort, moment.isoformat() if moment else None, pk]
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: str) -> tuple[datetime | None, int]:
    """The (time, id) position in `cursor`; a cursor of another sort, or a forged one, is a
    FilterError (a 400), never a query with a value the database cannot take."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        cursor_sort, moment, pk = orjson.loads(raw)
        if cursor_sort != sort or not isinstance(pk, int) or isinstance(pk, bool):
            raise ValueError
        if not 0 < pk < 2**63:
            raise ValueError
        if moment is None:
            return None, pk
        when = datetime.fromisoformat(moment)
        if when.tzinfo is None:
            raise ValueError
        return when.astimezone(UTC), pk
    except (ValueError, TypeError, OverflowError, orjson.JSONDecodeError, binascii.Error):
        raise FilterError({"cursor": "is not a cursor from this list"}) from None
