"""Set a demo installation up: namespaces, a user for each role, the reference agents with their
declared tools and approval policies, and fresh tokens for the agents' process.

Passwords are printed once, when a user is created. Agent tokens are never printed: they are
written to a file only this user can read (`--tokens-file`), issued anew on every run, with
the previous demo tokens revoked, so that a token file left behind stops working.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from access.models import Agent, Membership, Namespace, Token
from access.roles import Role
from access.tokens import issue_token, revoke_token
from audit.log import record
from interventions.models import ApprovalPolicy
from interventions.vocabulary import Risk
from reference_agents.catalogue import AGENTS, NAMESPACES

# The reference agents' namespaces, `demo` for trying the API by hand, and those that
# `manage.py seed_history` fills with synthetic runs, so that every demo user sees them too.
DEMO_NAMESPACES = {"demo": "Demo", **NAMESPACES, "acme": "Acme (synthetic history)",
                   "globex": "Globex (synthetic history)"}
# One user per role, named after it, holding that role in every demo namespace.
DEMO_USERS = ("admin", "viewer", "operator", "approver", "investigator")
AGENT_TOKEN_NAME = "reference-agents"  # noqa: S105 - a label, not a secret


class Command(BaseCommand):
    help = (
        "Create the demo's namespaces, one user per role (random passwords, printed once), the "
        "reference agents with their tools and approval policies, and fresh agent tokens "
        "written to --tokens-file. Refuses to run when DEBUG is off."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--tokens-file", default=str(settings.VAR_DIR / "reference-agents.json"),
            help="Where to write the reference agents' tokens (mode 600; default: %(default)s).",
        )
        parser.add_argument("--base-url", default="http://127.0.0.1:8000",
                            help="Where the demo serves, for the example printed (default: "
                                 "%(default)s).")
        parser.add_argument("--no-agent-tokens", action="store_true",
                            help="Do not issue agent tokens (nor revoke the previous ones).")

    def handle(self, *args, tokens_file, no_agent_tokens, base_url, **options):
        if not settings.DEBUG:
            raise CommandError("bootstrap_demo creates users with printed passwords: DEBUG only")
        with transaction.atomic():
            namespaces = {
                slug: Namespace.objects.get_or_create(slug=slug, defaults={"name": name})[0]
                for slug, name in DEMO_NAMESPACES.items()
            }
            created = self._users(namespaces)
            admin = get_user_model().objects.get(username="admin")
            first_token = self._first_agent(namespaces["demo"], admin) if "admin" in created \
                else None
            agents = [self._reference_agent(module, namespaces, admin)
                      for module in AGENTS.values()]
            tokens = {} if no_agent_tokens else self._fresh_tokens(agents)
        if tokens:
            _write_private(Path(tokens_file), {"agents": tokens})
        self._report(created, first_token, tokens_file if tokens else None, options["verbosity"],
                     base_url)

    def _users(self, namespaces: dict[str, Namespace]) -> dict[str, str]:
        """Create the demo users that are missing; {user name: password} of those created."""
        users = get_user_model().objects
        created = {}
        for name in DEMO_USERS:
            user = users.filter(username=name).first()
            if user is None:
                password = secrets.token_urlsafe(12)
                make = users.create_superuser if name == "admin" else users.create_user
                user = make(name, password=password)
                created[name] = password
            for namespace in namespaces.values():
                membership, new = Membership.objects.get_or_create(
                    user=user, namespace=namespace, role=Role(name)
                )
                if new:
                    record("member.role_added", namespace=namespace, obj=membership,
                           after={"user": name, "role": name})
        return created

    def _first_agent(self, namespace: Namespace, admin) -> str:
        """A token for demo/demo-agent, printed once with the users: for trying the API."""
        agent, _ = Agent.objects.get_or_create(
            namespace=namespace, name="demo-agent", defaults={"owner_user": admin}
        )
        return issue_token(agent=agent, name="demo", created_by=admin)[1]

    def _reference_agent(self, module, namespaces: dict[str, Namespace], admin) -> Agent:
        """The agent of a reference agent module, its declared tools and policies in place
        (put back, and audited, where someone changed them)."""
        wanted = {"description": module.DESCRIPTION, "allowed_tools": list(module.TOOLS),
                  "privileged": bool(module.PRIVILEGED)}
        agent, new = Agent.objects.get_or_create(
            namespace=namespaces[module.NAMESPACE], name=module.NAME,
            defaults={"owner_user": admin, **wanted},
        )
        before = {field: getattr(agent, field) for field in wanted}
        if not new and before != wanted:
            for field, value in wanted.items():
                setattr(agent, field, value)
            agent.full_clean()
            agent.save(update_fields=list(wanted))
            record("agent.changed", namespace=agent.namespace, obj=agent, before=before,
                   after=wanted)
        for tool in module.PRIVILEGED:
            policy, new = ApprovalPolicy.objects.get_or_create(
                agent=agent, tool=tool, defaults={"min_approvals": 1, "min_risk": Risk.HIGH}
            )
            if new:
                record("policy.changed", namespace=agent.namespace, obj=policy,
                       after={"agent": agent.name, "tool": tool, "min_approvals": 1,
                              "min_risk": Risk.HIGH})
        return agent

    def _fresh_tokens(self, agents: list[Agent]) -> dict[str, str]:
        for old in Token.objects.active().filter(agent__in=agents, name=AGENT_TOKEN_NAME):
            revoke_token(old)
        return {agent.name: issue_token(agent=agent, name=AGENT_TOKEN_NAME)[1]
                for agent in agents}

    def _report(self, created: dict[str, str], first_token: str | None, tokens_file,
                verbosity: int, base_url: str) -> None:
        if created:
            self.stdout.write("\nDemo users (passwords shown only now):")
            for name, password in created.items():
                self.stdout.write(f"  {name:<13} {password}")
        else:
            self.stdout.write(
                "\nDemo users exist already (passwords were shown when they were created; "
                "reset one with `.venv/bin/python manage.py changepassword <user>`)."
            )
        self.stdout.write(
            f"  each holds the role named after it in {', '.join(DEMO_NAMESPACES)}; "
            "admin is also a superuser"
        )
        if first_token:
            self.stdout.write(
                f"\nAgent token for demo/demo-agent (shown only now):\n  {first_token}\n"
                "Send events with:\n"
                "  curl -H 'Authorization: Bearer <token>' -H 'Content-Type: application/json'"
                " \\\n"
                "    -d '{\"events\": [{\"workflow_id\": \"wf-1\", \"run_id\": \"r1\", "
                "\"event_id\": 1, \"type\": \"workflow.started\", \"workflow_type\": \"demo\","
                " \"time\": \"2026-01-01T00:00:00Z\"}]}' \\\n"
                f"    {base_url}/api/v1/ingest"
            )
        if tokens_file and verbosity > 0:
            self.stdout.write(f"\nReference agents' tokens written to {tokens_file} "
                              "(readable only by you; earlier ones revoked).")


def _write_private(path: Path, content: dict) -> None:
    """Write `content` as JSON, readable and writable by this user only, replacing the file
    at once (a reader never sees half of it, and the secret never sits in a wider file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(content, file, indent=2)
    os.replace(partial, path)
