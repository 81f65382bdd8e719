"""Per-day counts of findings (`FindingDay`), kept in step with the findings themselves, so that
the governance page's counts and chart read a few hundred rows whatever the number of findings.

Every write of findings goes through here: detection adds the findings it stores, a durability
check removes the ones it replaces and adds the new ones, retention removes a deleted run's.
All in the caller's transaction. `recount` rebuilds a namespace's counts from its findings (the
repair, and the yardstick of the tests).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, date, datetime

from django.db import connection
from django.db.models import Count, QuerySet, Sum
from django.db.models.functions import TruncDate

from governance.models import Finding, FindingDay

Key = tuple[int, date, str]  # namespace id, day, rule


def day_of(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def of(findings: Iterable[Finding], sign: int = 1) -> Counter:
    return Counter({
        key: sign * n for key, n in Counter(
            (f.namespace_id, day_of(f.received_at), f.rule) for f in findings
        ).items()
    })


def of_stored(findings: QuerySet, sign: int = 1) -> Counter:
    """The counts of findings in the database (before deleting them), one query. Days in UTC,
    as `day_of` counts them, whatever TIME_ZONE says."""
    rows = (
        findings.annotate(day=TruncDate("received_at", tzinfo=UTC)).order_by()
        .values_list("namespace_id", "day", "rule").annotate(n=Count("id"))
        .values_list("namespace_id", "day", "rule", "n")
    )
    return Counter({(namespace_id, day, rule): sign * n for namespace_id, day, rule, n in rows})


def apply(changes: Counter) -> None:
    """Add `changes` (positive or negative) to the stored counts, in one statement."""
    # In key order, as every writer does, so that two statements upserting the same rows
    # (a batch's detection, a durability check, a retention deletion) cannot deadlock.
    changes = {key: n for key, n in sorted(changes.items()) if n}
    if not changes:
        return
    table = FindingDay._meta.db_table
    rows = ", ".join(["(%s, %s, %s, %s)"] * len(changes))
    params = [value for (namespace_id, day, rule), n in changes.items()
              for value in (namespace_id, day, rule, n)]
    # INSERT ... ON CONFLICT DO UPDATE: PostgreSQL and SQLite (3.24+) alike. Django's
    # bulk_create(update_conflicts=True) can only overwrite a count, not add to it. The text
    # holds the table name and placeholders only; every value is a parameter.
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (namespace_id, day, rule, count) VALUES {rows} "  # noqa: S608
            f"ON CONFLICT (namespace_id, day, rule) DO UPDATE "
            f"SET count = {table}.count + excluded.count",
            params,
        )


def per_day(namespace, since: datetime) -> dict[date, dict[str, int]]:
    found: dict[date, dict[str, int]] = {}
    for day, rule, n in FindingDay.objects.filter(
        namespace=namespace, day__gte=day_of(since), count__gt=0
    ).values_list("day", "rule", "count"):
        found.setdefault(day, {})[rule] = n
    return found


def totals(namespace) -> dict[str, int]:
    return dict(
        FindingDay.objects.filter(namespace=namespace).values_list("rule")
        .annotate(n=Sum("count")).values_list("rule", "n")
    )


def recount(namespace) -> None:
    """Rebuild a namespace's counts from its findings."""
    FindingDay.objects.filter(namespace=namespace).delete()
    apply(of_stored(Finding.objects.filter(namespace=namespace)))
