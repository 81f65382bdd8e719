"""Check the database against the signed digests (evidence.consistency)."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from evidence import keys
from evidence.consistency import check, digests_in_database, digests_in_folder
from evidence.verify_bundle import TrustedKeys, fingerprint_of


class Command(BaseCommand):
    help = ("Check every signed digest (signature, chain, Merkle head) and the database against "
            "each run state and audit head they recorded. Exits 1 naming each problem.")

    def add_arguments(self, parser):
        parser.add_argument("--digest-dir", help="Read the digests from their published folder "
                                                 "(recommended) instead of the database.")
        parser.add_argument("--trusted-key", action="append", default=[],
                            metavar="PEM_FILE|FINGERPRINT",
                            help="Trusted signing keys (default: this server's key).")

    def handle(self, *args, digest_dir, trusted_key, **options):
        trusted = TrustedKeys()
        for value in trusted_key:
            try:
                trusted.add(value)
            except ValueError as exc:
                raise CommandError(f"--trusted-key {value}: {exc}") from None
        server = keys.public_key()
        if not trusted_key:
            trusted.add_public_key(keys.public_key_pem())
        elif fingerprint_of(server) in trusted.fingerprints:
            # Digests carry no public key: a trusted fingerprint resolves to this server's key
            # when it is that key's, and to nothing else.
            trusted.keys[fingerprint_of(server)] = server
        if digest_dir:
            if not Path(digest_dir).is_dir():
                raise CommandError(f"no such folder: {digest_dir}")
            copies = digests_in_folder(Path(digest_dir))
        else:
            copies = digests_in_database()
        findings = check(copies, trusted)
        for problem in findings.problems:
            self.stderr.write(f"FAIL {problem}")
        if options["verbosity"] > 1:
            for note in findings.notes:
                self.stdout.write(f"note {note}")
        summary = (f"{findings.digests} digests checked, {findings.runs} run states compared "
                   f"with the database, {len(findings.problems)} problems")
        if findings.problems:
            raise CommandError(summary)
        self.stdout.write(self.style.SUCCESS(summary))
