"""What the refund-dispute agents share: a refund ticket as the job, and a run that reads the
customer, has the model assess the refund, and ends with the reply email. The agents differ
only in what they do with an eligible refund (each misbehaves in its own way there).
"""

from __future__ import annotations

from collections.abc import Callable

from reference_agents import help_desk
from reference_agents.jobs import Job, Session

# (run, ticket, customer, assessment) -> what the agent reports: `refund` (the refund made, or
# None), and the agent's own keys.
Refund = Callable[[object, dict, dict, dict], dict]


def job(number: int, session: Session, *, prefix: str, team: str) -> Job:
    ticket = help_desk.ticket(number, intent="refund")
    return Job(workflow_id=f"{prefix}-{ticket['ticket_id']}-{session.batch}",
               input={"ticket": ticket}, labels={"team": team}, number=number)


def execute(session: Session, job: Job, workflow_type: str, refund: Refund,
            reported: tuple[str, ...] = ()) -> dict:
    """Run the dispute; `refund` is called when the model finds the refund eligible. The
    result names the ticket, each of `reported` (None when there was no refund to make) and
    the refund."""
    ticket, model = job.input["ticket"], session.model
    result: dict = {}  # stays empty when an operator cancels or terminates the run
    with session.client.run(workflow_type, workflow_id=job.workflow_id, run_id=job.run_id,
                            input=job.input, labels=job.labels, new=job.new) as run:
        customer = run.call("read_customer", help_desk.customer, ticket["customer_id"],
                            kind="tool")
        assessment = run.call("assess_refund", model.assess_refund, ticket, customer, [],
                              kind="llm")
        made = dict.fromkeys((*reported, "refund"))
        if assessment["eligible"]:
            made.update(refund(run, ticket, customer, assessment))
        else:
            run.decide("no_refund", reason=assessment["reason"], model=model.name)
        run.call("send_email", help_desk.DESK.send_email, customer["email"],
                 f"Re: {ticket['subject']}",
                 "Refunded." if made["refund"] else f"No refund: {assessment['reason']}.",
                 kind="tool")
        result = {"ticket_id": ticket["ticket_id"], **made}
        run.complete(result)
    return {**result, "outcome": run.outcome}
