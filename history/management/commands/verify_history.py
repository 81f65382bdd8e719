"""Re-check the hash chains of one run or of every run."""

from __future__ import annotations

import uuid

from django.core.management.base import BaseCommand, CommandError

from access.models import Namespace
from history.models import Run
from history.verification import verify_run


class Command(BaseCommand):
    help = "Re-check stored events against their hash chains; exits 1 when a chain is broken."

    def add_arguments(self, parser):
        parser.add_argument("runs", nargs="*", help="Run UUIDs (default: every run).")
        parser.add_argument("--namespace", help="Only the runs of this namespace (slug).")

    def handle(self, *args, runs, namespace, **options):
        queryset = Run.objects.select_related("namespace").order_by("pk")
        if runs:
            malformed = [value for value in runs if not _is_uuid(value)]
            if malformed:
                raise CommandError(f"not a run UUID: {', '.join(malformed)}")
            wanted = {uuid.UUID(value) for value in runs}
            queryset = queryset.filter(uuid__in=wanted)
            found = set(queryset.values_list("uuid", flat=True))
            if found != wanted:
                missing = sorted(str(value) for value in wanted - found)
                raise CommandError(f"no such run: {', '.join(missing)}")
        if namespace:
            if not Namespace.objects.filter(slug=namespace).exists():
                raise CommandError(f"no such namespace: {namespace}")
            queryset = queryset.filter(namespace__slug=namespace)
        checked = broken = 0
        for run in queryset.iterator(chunk_size=500):
            checked += 1
            problems = verify_run(run)
            if problems:
                broken += 1
                for problem in problems:
                    self.stderr.write(str(problem))
            elif options["verbosity"] > 1:
                self.stdout.write(f"ok {run.uuid} ({run.event_count} events)")
        summary = f"{checked} runs checked, {broken} with a broken chain"
        if broken:
            raise CommandError(summary)
        self.stdout.write(self.style.SUCCESS(summary))


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
