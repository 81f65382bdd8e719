"""Misbehaving: a month-end report builder whose supervisor restarts it from scratch.

Its first run fails at the last step (the publishing service is over quota). Instead of
resuming that run, its supervisor starts a new run of the same workflow id, which fetches and
reconciles every ledger again: work that had completed. The durability panel reports this as
a restart from scratch (history/durability.py); a resumable agent would pass the same run id
and have its completed activities replayed instead (see crash_resume).
"""

from __future__ import annotations

import hashlib

from reference_agents.jobs import Job, Session

NAME = "report-builder"
NAMESPACE = "research"
WORKFLOW_TYPE = "month-end-report"
DESCRIPTION = "Builds the month-end ledger report; restarted from scratch when it fails."
TOOLS = ("fetch_ledger", "reconcile", "publish_report")
PRIVILEGED = ()
MISBEHAVIOUR = "restarts from scratch and redoes completed work"
INTERVAL = 90
RESUMES = False  # after a restart of its process, unfinished work is simply abandoned
ACCOUNTS = ("cash", "receivables", "payables", "payroll")


class QuotaExceeded(Exception):
    """The publishing service refused: over its daily quota."""


def job(number: int, session: Session) -> Job:
    period = f"2026-{(number % 12) + 1:02d}"
    return Job(workflow_id=f"month-end-{period}-{session.batch}-{number}",
               input={"period": period, "accounts": list(ACCOUNTS)},
               labels={"team": "finance"}, number=number)


def fetch_ledger(account: str, period: str) -> dict:
    digest = hashlib.sha256(f"{account}:{period}".encode()).digest()
    return {"account": account, "period": period, "entries": 40 + digest[0],
            "balance": int.from_bytes(digest[1:4], "big") / 100}


def reconcile(ledgers: list[dict]) -> dict:
    return {"accounts": len(ledgers), "total": round(sum(led["balance"] for led in ledgers), 2),
            "mismatches": 0}


def publisher(fail: bool):
    def publish_report(period: str, summary: dict) -> dict:
        if fail:
            raise QuotaExceeded("429 Too Many Requests: report service quota exhausted")
        return {"url": f"https://reports.example/{period}", "accounts": summary["accounts"]}

    return publish_report


def attempt(session: Session, job: Job, *, fail_at_publish: bool) -> dict:
    period = job.input["period"]
    result: dict = {}  # stays empty when an operator cancels or terminates the run
    with session.client.run(WORKFLOW_TYPE, workflow_id=job.workflow_id, run_id=job.run_id,
                            input=job.input, labels=job.labels, new=job.new) as run:
        ledgers = [
            run.call("fetch_ledger", fetch_ledger, account, period, kind="tool",
                     key=f"ledger:{account}:{period}")
            for account in job.input["accounts"]
        ]
        summary = run.call("reconcile", reconcile, ledgers, kind="tool",
                           key=f"reconcile:{period}")
        published = run.call("publish_report", publisher(fail_at_publish), period, summary,
                             kind="tool", key=f"publish:{period}")
        result = {"period": period, "report": published["url"]}
        run.complete(result)
    return {**result, "outcome": run.outcome}


def execute(session: Session, job: Job) -> dict:
    try:
        return attempt(session, job, fail_at_publish=True)
    except QuotaExceeded:
        # The misbehaviour: a fresh run (new run id) instead of resuming the failed one.
        return attempt(session, Job(job.workflow_id, job.input, None, job.labels),
                       fail_at_publish=False)
