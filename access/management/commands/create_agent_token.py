"""Create an agent token, creating the namespace and agent when missing."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_slug
from django.db import transaction

from access.models import Agent, Namespace
from access.tokens import issue_token


class Command(BaseCommand):
    help = (
        "Create an API token for an agent (creating the namespace and agent if missing). "
        "The token is printed once, as the last line."
    )

    def add_arguments(self, parser):
        parser.add_argument("--namespace", required=True, help="Namespace slug.")
        parser.add_argument("--agent", required=True, help="Agent name.")
        parser.add_argument("--name", default="", help="A label for the token.")

    def handle(self, *args, namespace, agent, name, **options):
        try:
            validate_slug(namespace)
        except ValidationError:
            raise CommandError("--namespace must be a slug (letters, digits, - and _)") from None
        if not agent.strip():
            raise CommandError("--agent must not be empty")
        with transaction.atomic():
            ns, ns_created = Namespace.objects.get_or_create(slug=namespace)
            ag, ag_created = Agent.objects.get_or_create(namespace=ns, name=agent)
            token, secret = issue_token(agent=ag, name=name)  # audited, actor: system
        if options["verbosity"] > 0:
            if ns_created:
                self.stderr.write(f"created namespace {ns.slug}")
            if ag_created:
                self.stderr.write(f"created agent {ag}")
            self.stderr.write(f"token {token.prefix} for agent {ag}; it is shown only once:")
        self.stdout.write(secret)
