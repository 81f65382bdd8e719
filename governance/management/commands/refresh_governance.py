"""Bring governance findings up to date: the due durability checks, and (with --backfill)
the ingest-time findings of runs stored before governance existed or loaded in bulk."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from access.models import Namespace
from governance import durability_checks
from governance.backfill import examine_stored


class Command(BaseCommand):
    help = ("Run the due durability checks now; with --backfill, first examine every stored "
            "run as ingest would have and mark its workflow id due.")

    def add_arguments(self, parser):
        parser.add_argument("--namespace", help="Only this namespace (slug).")
        parser.add_argument("--backfill", action="store_true",
                            help="Examine stored runs' events (for runs stored without ingest).")

    def handle(self, *args, namespace: str | None, backfill: bool, **options):
        scope = None
        if namespace:
            scope = Namespace.objects.filter(slug=namespace).first()
            if scope is None:
                raise CommandError(f"no such namespace: {namespace}")
        if backfill:
            self.stdout.write(f"{examine_stored(namespace=scope)} runs examined")
        checked = durability_checks.run_pending(namespace=scope, limit=10**9)
        self.stdout.write(self.style.SUCCESS(f"{checked} workflow ids checked"))

