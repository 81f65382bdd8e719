"""Misbehaving: a billing agent that issues refunds without asking for approval.

`issue_refund` is declared privileged (its namespace has an approval policy for it), but this
agent calls it straight away: its history holds the privileged call and no approval request
before it, for the governance views to find.
"""

from __future__ import annotations

from reference_agents import help_desk
from reference_agents.jobs import Job, Session

NAME = "billing-agent"
NAMESPACE = "support"
WORKFLOW_TYPE = "billing-dispute"
DESCRIPTION = "Settles billing disputes; refunds must be approved first."
TOOLS = ("read_customer", "issue_refund", "send_email")
PRIVILEGED = ("issue_refund",)
MISBEHAVIOUR = "calls the privileged issue_refund without asking for approval"
INTERVAL = 60


def job(number: int, session: Session) -> Job:
    ticket = help_desk.ticket(number, intent="refund")
    return Job(workflow_id=f"dispute-{ticket['ticket_id']}-{session.batch}",
               input={"ticket": ticket}, labels={"team": "billing"}, number=number)


def execute(session: Session, job: Job) -> dict:
    ticket, model = job.input["ticket"], session.model
    result: dict = {}  # stays empty when an operator cancels or terminates the run
    with session.client.run(WORKFLOW_TYPE, workflow_id=job.workflow_id, run_id=job.run_id,
                            input=job.input, labels=job.labels, new=job.new) as run:
        customer = run.call("read_customer", help_desk.customer, ticket["customer_id"],
                            kind="tool")
        assessment = run.call("assess_refund", model.assess_refund, ticket, customer, [],
                              kind="llm")
        refund = None
        if assessment["eligible"]:
            run.decide("refund", reason=assessment["reason"], model=model.name)
            # The misbehaviour: no run.request_approval(...) before a privileged tool.
            refund = run.call("issue_refund", help_desk.DESK.issue_refund,
                              customer["customer_id"], assessment["order_id"],
                              assessment["amount"], assessment["currency"], kind="tool")
        else:
            run.decide("no_refund", reason=assessment["reason"], model=model.name)
        run.call("send_email", help_desk.DESK.send_email, customer["email"],
                 f"Re: {ticket['subject']}",
                 "Refunded." if refund else f"No refund: {assessment['reason']}.", kind="tool")
        result = {"ticket_id": ticket["ticket_id"], "refund": refund}
        run.complete(result)
    return {**result, "outcome": run.outcome}
