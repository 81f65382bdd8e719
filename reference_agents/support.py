"""Customer-support agent: reads a ticket, searches the knowledge base, reads the customer's
record, refunds an order when policy allows and a person approves, and answers by e-mail.

Well behaved: it calls only its declared tools, asks before the privileged one, honours a
rejection or an expiry (no refund, and the reply says so), and sends no credentials anywhere.
"""

from __future__ import annotations

from reference_agents import help_desk
from reference_agents.jobs import Job, Session

NAME = "support-agent"
NAMESPACE = "support"
WORKFLOW_TYPE = "support"
DESCRIPTION = "Answers customer tickets; refunds orders after a person approves."
TOOLS = ("search_kb", "read_customer", "issue_refund", "send_email")
PRIVILEGED = ("issue_refund",)
MISBEHAVIOUR = ""
INTERVAL = 20  # seconds between runs in the demo
LANES = 3  # tickets worked at once in the demo: refunds wait for a person meanwhile


def job(number: int, session: Session, *, intent: str | None = None) -> Job:
    ticket = help_desk.ticket(number, intent=intent)
    return Job(
        workflow_id=f"ticket-{ticket['ticket_id']}-{session.batch}",
        input={"ticket": ticket},
        labels={"team": "cx", "channel": "email"},
        number=number,
    )


def execute(session: Session, job: Job) -> dict:
    client, model = session.client, session.model
    ticket = job.input["ticket"]
    result: dict = {}  # stays empty when an operator cancels or terminates the run
    with client.run(WORKFLOW_TYPE, workflow_id=job.workflow_id, run_id=job.run_id,
                    input=job.input, labels=job.labels, new=job.new) as run:
        triage = run.call("classify_ticket", model.classify_ticket, ticket, kind="llm")
        intent = triage["intent"]
        run.decide(intent, reason=triage["reason"], model=model.name,
                   confidence=triage["confidence"])
        query = model.search_query(ticket, intent)
        articles = run.call("search_kb", help_desk.search_kb, query, kind="tool")
        customer = run.call("read_customer", help_desk.customer, ticket["customer_id"],
                            kind="tool")
        outcome, refund, approval_decision = _answer(session, run, ticket, customer, articles,
                                                     intent)
        reply = run.call("draft_reply", model.draft_reply, ticket, customer, outcome, articles,
                         kind="llm")
        sent = run.call("send_email", help_desk.DESK.send_email, customer["email"],
                        reply["subject"], reply["body"], kind="tool")
        result = {"ticket_id": ticket["ticket_id"], "intent": intent,
                  "refund": refund, "approval": approval_decision,
                  "message_id": sent["message_id"]}
        run.complete(result)
    return {**result, "outcome": run.outcome}


def _answer(session: Session, run, ticket: dict, customer: dict, articles: list[dict],
            intent: str) -> tuple[str, dict | None, str | None]:
    """What to tell the customer, the refund made (if any) and the approval's outcome."""
    if intent != "refund":
        titles = ", ".join(article["title"] for article in articles) or "our help centre"
        return f"Here is what should help: {titles}.", None, None
    assessment = run.call("assess_refund", session.model.assess_refund, ticket, customer,
                          articles, kind="llm")
    if not assessment["eligible"]:
        run.decide("no_refund", reason=assessment["reason"], model=session.model.name)
        return f"We cannot refund this order: {assessment['reason']}.", None, None
    arguments = {"customer_id": customer["customer_id"], "order_id": assessment["order_id"],
                 "amount": assessment["amount"], "currency": assessment["currency"]}
    run.decide("refund", reason=assessment["reason"], model=session.model.name, **arguments)
    approval = run.request_approval(
        "issue_refund", arguments=arguments,
        summary=f"Refund {assessment['amount']} {assessment['currency']} for "
                f"{assessment['order_id']} ({ticket['ticket_id']})",
        risk="high" if assessment["amount"] > 100 else "medium",
        timeout=session.approval_timeout,
    )
    if not approval.approved:
        # Honour the decision: no refund, and tell the customer why in the reviewer's words.
        why = approval.comment or f"the request {approval.decision}"
        run.decide("refund_withheld", reason=why, approval=approval.decision)
        return f"We could not refund this order now: {why}.", None, approval.decision
    refund = run.call("issue_refund", help_desk.DESK.issue_refund, arguments["customer_id"],
                      arguments["order_id"], arguments["amount"], arguments["currency"],
                      kind="tool")
    return (f"We refunded {refund['amount']} {refund['currency']} ({refund['refund_id']}).",
            refund, approval.decision)
