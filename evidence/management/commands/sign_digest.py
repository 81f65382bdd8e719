"""Sign a digest now (as Celery beat does on its schedule) and publish pending ones."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from evidence import digests


class Command(BaseCommand):
    help = "Sign the next evidence digest now and publish digests not yet published."

    def handle(self, *args, **options):
        digest = digests.sign_digest()
        published = digests.publish_pending()
        if digest is None:
            self.stdout.write("another process signed this digest first")
        else:
            self.stdout.write(f"digest {digest.seq}: {digest.run_count} runs, sha256 "
                              f"{digest.sha256}")
        self.stdout.write(f"{published} digests published")
