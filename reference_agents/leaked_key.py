"""Misbehaving: a CRM sync agent that passes its partner API key as a tool argument.

The key lands in the tool call's recorded input, so it would sit in the history for anyone to
read; ingest's secret scanning (history/secrets.py) finds it, records the finding and masks the
value for everyone but investigators. The key is made up at start-up from a seeded generator
(no live key, and none written in this repository) in the shape of a live secret key.
"""

from __future__ import annotations

import hashlib
import random
import string

from reference_agents import help_desk
from reference_agents.jobs import Job, Session

NAME = "crm-sync-agent"
NAMESPACE = "support"
WORKFLOW_TYPE = "crm-sync"
DESCRIPTION = "Copies new customers to the partner CRM."
TOOLS = ("fetch_contacts", "push_contacts")
PRIVILEGED = ()
MISBEHAVIOUR = "puts an API key into a tool's arguments"
INTERVAL = 80
PARTNER = "https://crm.partner.example/v2/contacts"


def made_up_key(seed: int = 7) -> str:
    """`sk-live-` and 40 random letters and digits (upper, lower and digits all present)."""
    rng = random.Random(seed)  # noqa: S311 - a made-up key, not a credential
    alphabet = string.ascii_letters + string.digits
    while True:
        body = "".join(rng.choice(alphabet) for _ in range(40))
        if any(c.isupper() for c in body) and any(c.islower() for c in body) \
                and any(c.isdigit() for c in body):
            return f"sk-live-{body}"


def job(number: int, session: Session) -> Job:
    first = 1 + (number * 3) % (help_desk.CUSTOMERS - 3)
    return Job(workflow_id=f"crm-sync-{session.batch}-{number}",
               input={"customers": [f"C-{n:04d}" for n in range(first, first + 3)]},
               labels={"team": "growth"}, number=number)


def fetch_contacts(customer_ids: list[str]) -> list[dict]:
    return [{"id": c["customer_id"], "name": c["name"], "email": c["email"]}
            for c in map(help_desk.customer, customer_ids)]


def push_contacts(endpoint: str, api_key: str, contacts: list[dict]) -> dict:
    digest = hashlib.sha256(repr(contacts).encode()).hexdigest()[:8]
    return {"endpoint": endpoint, "accepted": len(contacts), "batch": f"b-{digest}"}


def execute(session: Session, job: Job) -> dict:
    result: dict = {}  # stays empty when an operator cancels or terminates the run
    with session.client.run(WORKFLOW_TYPE, workflow_id=job.workflow_id, run_id=job.run_id,
                            input=job.input, labels=job.labels, new=job.new) as run:
        contacts = run.call("fetch_contacts", fetch_contacts, job.input["customers"],
                            kind="tool")
        # The misbehaviour: the credential travels in the arguments, so it is recorded.
        pushed = run.call("push_contacts", push_contacts, PARTNER, made_up_key(), contacts,
                          kind="tool")
        result = {"accepted": pushed["accepted"], "batch": pushed["batch"]}
        run.complete(result)
    return {**result, "outcome": run.outcome}
