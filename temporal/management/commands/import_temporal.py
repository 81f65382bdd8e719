"""manage.py import_temporal FILE... [--namespace SLUG] [--agent NAME] [--workflow-id ID]
[--run-id ID] [--dry-run]: import Temporal history files, each checked whole first (the same
import as the upload page and the API, run here without a queue)."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from access.models import Namespace
from temporal import importer, preparation
from temporal.models import ImportState


class Command(BaseCommand):
    help = "Import Temporal history JSON files (temporal workflow show -o json, and others)."

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", metavar="FILE")
        parser.add_argument("--namespace", default="default",
                            help="the Flightdeck namespace's slug (default: default)")
        parser.add_argument("--agent", default="", help=f"default {importer.DEFAULT_AGENT}")
        parser.add_argument("--workflow-id", default="",
                            help="for histories that do not name their workflow")
        parser.add_argument("--run-id", default="", help="for a history that does not name it")
        parser.add_argument("--dry-run", action="store_true",
                            help="read and check the files, store nothing")

    def handle(self, *args, **options):
        namespace = Namespace.objects.filter(slug=options["namespace"]).first()
        if namespace is None:
            raise CommandError(f"--namespace: there is no namespace {options['namespace']!r}")
        failed = 0
        for name in options["files"]:
            try:
                content = Path(name).read_bytes()
            except OSError as exc:
                raise CommandError(f"{name}: {exc.strerror or exc}") from None
            failed += not self._import(name, content, namespace, options)
        if failed:
            raise CommandError(f"{failed} of {len(options['files'])} files were not imported")

    def _import(self, name: str, content: bytes, namespace, options) -> bool:
        if options["dry_run"]:
            try:
                runs = preparation.prepare(content, workflow_id=options["workflow_id"],
                                           run_id=options["run_id"])
            except preparation.ImportRefused as exc:
                self.stderr.write(f"{name}: {exc.message}")
                return False
            self.stdout.write(f"{name}: would import {sum(len(r.events) for r in runs)} events "
                              f"in {len(runs)} runs")
            return True
        try:
            imp = importer.start_import(
                namespace=namespace, user=None, content=content, filename=Path(name).name,
                agent_name=options["agent"], workflow_id=options["workflow_id"],
                run_id=options["run_id"], inline=True,
            )
        except preparation.ImportRefused as exc:
            self.stderr.write(f"{name}: {exc.message}")
            return False
        if imp.state != ImportState.DONE:
            self.stderr.write(f"{name}: {imp.error}")
            return False
        if options["verbosity"] >= 1:
            self.stdout.write(
                f"{name}: {imp.stored} new events, {imp.duplicates} already stored, "
                f"{len(imp.runs)} runs into {namespace.slug} as {imp.agent.name}"
            )
            if options["verbosity"] >= 2:
                for run in imp.runs:
                    self.stdout.write(f"  {run['workflow_id']} / {run['run_id']}: "
                                      f"{run['events']} events, {run['status']} ({run['uuid']})")
        return True
