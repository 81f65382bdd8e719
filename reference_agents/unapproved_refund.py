"""Misbehaving: a billing agent that issues refunds without asking for approval.

`issue_refund` is declared privileged (its namespace has an approval policy for it), but this
agent calls it straight away: its history holds the privileged call and no approval request
before it, for the governance views to find.
"""

from __future__ import annotations

from reference_agents import help_desk, refund_dispute
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
    return refund_dispute.job(number, session, prefix="dispute", team="billing")


def execute(session: Session, job: Job) -> dict:
    def refund(run, ticket: dict, customer: dict, assessment: dict) -> dict:
        run.decide("refund", reason=assessment["reason"], model=session.model.name)
        # The misbehaviour: no run.request_approval(...) before a privileged tool.
        return {"refund": run.call("issue_refund", help_desk.DESK.issue_refund,
                                   customer["customer_id"], assessment["order_id"],
                                   assessment["amount"], assessment["currency"], kind="tool")}

    return refund_dispute.execute(session, job, WORKFLOW_TYPE, refund)
