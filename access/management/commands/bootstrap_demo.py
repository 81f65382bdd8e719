"""Give a fresh demo installation a first user, a namespace and an agent token."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from access.models import Agent, Membership, Namespace
from access.tokens import issue_token


class Command(BaseCommand):
    help = (
        "Create a first superuser (random password, printed once), a 'demo' namespace and an "
        "agent token, unless users already exist. Refuses to run when DEBUG is off."
    )

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError("bootstrap_demo creates users with printed passwords: DEBUG only")
        users = get_user_model().objects
        if users.exists():
            self.stdout.write(
                "Users exist already; sign in with yours (forgotten the demo's? "
                "`.venv/bin/python manage.py changepassword admin`)."
            )
            return
        password = secrets.token_urlsafe(12)
        admin = users.create_superuser("admin", password=password)
        namespace, _ = Namespace.objects.get_or_create(slug="demo", defaults={"name": "Demo"})
        Membership.objects.get_or_create(user=admin, namespace=namespace, role="admin")
        agent, _ = Agent.objects.get_or_create(
            namespace=namespace, name="demo-agent", defaults={"owner_user": admin}
        )
        _, token = issue_token(agent=agent, name="demo", created_by=admin)
        self.stdout.write(
            "\nFirst user (shown only now):\n"
            f"  user name: admin\n  password:  {password}\n"
            f"Agent token for demo/demo-agent (shown only now):\n  {token}\n"
            "Send events with:\n"
            "  curl -H 'Authorization: Bearer <token>' -H 'Content-Type: application/json' \\\n"
            "    -d '{\"events\": [{\"workflow_id\": \"wf-1\", \"run_id\": \"r1\", \"event_id\": 1,"
            " \"type\": \"workflow.started\", \"workflow_type\": \"demo\","
            " \"time\": \"2026-01-01T00:00:00Z\"}]}' \\\n"
            "    http://127.0.0.1:8000/api/v1/ingest\n"
        )
