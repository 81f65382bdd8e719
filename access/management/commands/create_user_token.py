"""Create an API token that acts with a user's roles."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from access.tokens import issue_token


class Command(BaseCommand):
    help = "Create an API token for a user. The token is printed once, as the last line."

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, help="User name.")
        parser.add_argument("--name", default="", help="A label for the token.")

    def handle(self, *args, user, name, **options):
        model = get_user_model()
        try:
            owner = model.objects.get(**{model.USERNAME_FIELD: user})
        except model.DoesNotExist:
            raise CommandError(f"no user named {user!r}") from None
        token, secret = issue_token(user=owner, name=name)  # audited, actor: system
        if options["verbosity"] > 0:
            self.stderr.write(f"token {token.prefix} for user {owner}; it is shown only once:")
        self.stdout.write(secret)
