"""Delete runs past their namespace's retention period (what the periodic task does)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from access.models import Namespace
from governance.retention import apply_retention


class Command(BaseCommand):
    help = ("Delete closed runs older than their namespace's retention period, except held "
            "ones; every deletion is audited. --dry-run lists them instead.")

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="List, delete nothing.")
        parser.add_argument("--namespace", help="Only this namespace (slug).")

    def handle(self, *args, dry_run: bool, namespace: str | None, **options):
        scope = None
        if namespace:
            scope = Namespace.objects.filter(slug=namespace).first()
            if scope is None:
                raise CommandError(f"no such namespace: {namespace}")
        report = apply_retention(dry_run=dry_run, namespace=scope)
        for slug in report.held_namespaces:
            self.stdout.write(f"held: namespace {slug} (its runs are kept)")
        verb = "would delete" if dry_run else "deleted"
        for run in report.would_delete if dry_run else report.deleted:
            if options["verbosity"] > 0:
                self.stdout.write(f"{verb} {run['uuid']} {run['workflow_id']} / {run['run_id']} "
                                  f"({run['event_count']} events, closed {run['closed_at']})")
        for failure in report.failed:
            self.stderr.write(f"failed: {failure}")
        count = len(report.would_delete if dry_run else report.deleted)
        summary = f"{verb} {count} run{'s' if count != 1 else ''}"
        if report.more:
            summary += " (stopped at the time budget: more are due)"
        if report.failed:
            raise CommandError(f"{summary}; {len(report.failed)} failed")
        self.stdout.write(self.style.SUCCESS(summary))
