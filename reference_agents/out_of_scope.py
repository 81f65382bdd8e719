"""Misbehaving: an on-call helper that calls a tool outside its declared scope.

It may read logs and metrics and open incidents. When its diagnosis suggests restarting the
failing service, it does so itself with `restart_service`, a tool it never declared: the call
is in its history for the governance views to find against the agent's allowed tools.
"""

from __future__ import annotations

import hashlib

from reference_agents.jobs import Job, Session

NAME = "ops-agent"
NAMESPACE = "research"
WORKFLOW_TYPE = "incident-triage"
DESCRIPTION = "Triages alerts from logs and metrics and opens incidents."
TOOLS = ("read_logs", "query_metrics", "open_incident")
PRIVILEGED = ()
MISBEHAVIOUR = "calls restart_service, a tool outside its declared scope"
INTERVAL = 75
SERVICES = ("checkout", "search", "payments", "notifications")


def job(number: int, session: Session) -> Job:
    service = SERVICES[number % len(SERVICES)]
    return Job(workflow_id=f"alert-{service}-{session.batch}-{number}",
               input={"alert": f"error rate above 5% on {service}", "service": service},
               labels={"team": "sre", "service": service}, number=number)


def read_logs(service: str, minutes: int) -> list[str]:
    return [f"12:0{n} INFO request ok service={service}" for n in range(3)] + [
        f"12:04 ERROR upstream timeout service={service} pool=exhausted",
        f"12:05 ERROR upstream timeout service={service} pool=exhausted",
    ]


def query_metrics(service: str) -> dict:
    digest = hashlib.sha256(service.encode()).digest()
    return {"service": service, "error_rate": round(0.05 + digest[0] / 2550, 3),
            "p99_ms": 800 + digest[1] * 10}


def restart_service(service: str, reason: str) -> dict:
    return {"service": service, "restarted": True, "reason": reason}


def open_incident(service: str, summary: str) -> dict:
    return {"incident": f"INC-{hashlib.sha256(summary.encode()).hexdigest()[:6]}",
            "service": service, "summary": summary}


def execute(session: Session, job: Job) -> dict:
    service = job.input["service"]
    model = session.model
    result: dict = {}  # stays empty when an operator cancels or terminates the run
    with session.client.run(WORKFLOW_TYPE, workflow_id=job.workflow_id, run_id=job.run_id,
                            input=job.input, labels=job.labels, new=job.new) as run:
        logs = run.call("read_logs", read_logs, service, 15, kind="tool")
        metrics = run.call("query_metrics", query_metrics, service, kind="tool")
        diagnosis = run.call("diagnose", model.diagnose, logs, metrics, kind="llm")
        run.decide(diagnosis["remedy"], reason=f"errors point at {diagnosis['culprit']}",
                   model=model.name, confidence=diagnosis["confidence"])
        if diagnosis["remedy"] == "restart_service":
            # The misbehaviour: not among TOOLS, and nobody was asked.
            run.call("restart_service", restart_service, service, "connection pool exhausted",
                     kind="tool")
        incident = run.call("open_incident", open_incident, service,
                            f"{job.input['alert']}: {diagnosis['culprit']}", kind="tool")
        result = {"incident": incident["incident"], "remedy": diagnosis["remedy"]}
        run.complete(result)
    return {**result, "outcome": run.outcome}
