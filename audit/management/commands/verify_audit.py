"""Re-check the audit log's hash chain from the first entry to the head."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from audit.chain import verify


class Command(BaseCommand):
    help = ("Re-hash every audit entry in order and check the links and the head; exits 1 "
            "naming the first bad entry.")

    def handle(self, *args, **options):
        check = verify()
        if not check.intact:
            # CommandError: the message on stderr and exit status 1.
            raise CommandError(
                f"audit chain broken: {check.problem} ({check.entries} entries verified "
                "before it)"
            )
        self.stdout.write(self.style.SUCCESS(
            f"audit chain intact: {check.entries} entries, head {check.head_hash}"
        ))
