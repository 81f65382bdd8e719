"""Verify an evidence bundle against a trusted key: the same checks as the standalone
evidence/verify_bundle.py (this command runs its code), from a Flightdeck server."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from evidence import keys
from evidence.verify_bundle import TrustedKeys, verify_bundle


class Command(BaseCommand):
    help = ("Verify an evidence bundle: manifest, signature against the trusted key, every "
            "event chain, the signed digests. Exits 1 naming each problem.")

    def add_arguments(self, parser):
        parser.add_argument("bundle", help="The bundle (.zip).")
        parser.add_argument(
            "--trusted-key", action="append", default=[], metavar="PEM_FILE|FINGERPRINT",
            help="A trusted signing key: a PEM public key file, or its SHA-256 fingerprint "
                 "(repeatable).",
        )
        parser.add_argument(
            "--this-server", action="store_true",
            help="Trust this server's own signing key (only if you trust this server).",
        )
        parser.add_argument("--digest-dir", help="A folder of digest files kept outside "
                                                 "Flightdeck, to check the runs against.")

    def handle(self, *args, bundle, trusted_key, this_server, digest_dir, **options):
        trusted = TrustedKeys()
        for value in trusted_key:
            try:
                trusted.add(value)
            except ValueError as exc:
                raise CommandError(f"--trusted-key {value}: {exc}") from None
        if this_server:
            trusted.add_public_key(keys.public_key_pem())
        if not trusted:
            raise CommandError("name the key you trust: --trusted-key PEM_FILE|FINGERPRINT "
                               "(or --this-server)")
        if not Path(bundle).is_file():
            raise CommandError(f"no such file: {bundle}")
        result = verify_bundle(bundle, trusted, digest_dir=digest_dir)
        for problem in result.problems:
            self.stderr.write(f"FAIL {problem}")
        if options["verbosity"] > 0:
            for note in result.notes:
                self.stdout.write(f"note {note}")
        if not result.ok:
            raise CommandError(result.summary())
        self.stdout.write(self.style.SUCCESS(result.summary()))
