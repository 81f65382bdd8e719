"""Research agent: many steps. It plans a question into sub-questions, searches for each,
fetches and summarises every result (some fetches fail at a flaky upstream and are retried),
waits out the search service's rate limit between rounds on a durable timer (`run.sleep`: not
waited again after a resume), then writes a cited report.

With the default depth it records about thirty activities per run, all within its declared
tools (the LLM steps are `kind="llm"` activities, not tools).
"""

from __future__ import annotations

import hashlib

from reference_agents import library
from reference_agents.jobs import Job, Session

NAME = "research-agent"
NAMESPACE = "research"
WORKFLOW_TYPE = "research"
DESCRIPTION = "Answers research questions from several sources, with citations."
TOOLS = ("web_search", "fetch_source", "write_report")
PRIVILEGED = ()
MISBEHAVIOUR = ""
INTERVAL = 45
QUESTIONS = (
    "How fast is grid-scale battery storage growing?",
    "What holds back community solar projects?",
    "Are heat pumps cheaper to run than gas boilers?",
    "How reliable are published emissions figures?",
    "What happened to offshore wind auctions this year?",
)
RESULTS_PER_SEARCH = 3
RATE_LIMIT_PAUSE = 1.0  # seconds the search service asks between rounds
FETCH_RETRIES = 2


def job(number: int, session: Session, *, depth: int = 4) -> Job:
    question = QUESTIONS[number % len(QUESTIONS)]
    return Job(workflow_id=f"research-{session.batch}-{number}",
               input={"question": question, "depth": depth}, labels={"team": "research"},
               number=number)


def write_report(report: dict) -> dict:
    name = hashlib.sha256(report["title"].encode()).hexdigest()[:10]
    return {"document": f"reports/{name}.md", "words": len(report["body"].split()),
            "citations": len(report["citations"])}


def execute(session: Session, job: Job) -> dict:
    model = session.model
    question = job.input["question"]
    result: dict = {}  # stays empty when an operator cancels or terminates the run
    with session.client.run(WORKFLOW_TYPE, workflow_id=job.workflow_id, run_id=job.run_id,
                            input=job.input, labels=job.labels, new=job.new) as run:
        plan = run.call("plan_research", model.plan_research, question, job.input["depth"],
                        kind="llm")
        run.decide("plan", reason=f"{len(plan['steps'])} sub-questions", model=model.name,
                   steps=plan["steps"])
        summaries = []
        upstream = library.Library()  # this run's view of the flaky upstream
        for round_number, step in enumerate(plan["steps"]):
            if round_number:
                # The search service's rate limit: a durable timer, so a run resumed after a
                # crash waits only for what is left of it.
                run.sleep(RATE_LIMIT_PAUSE, timer_id=f"rate-limit-{round_number}")
            hits = run.call("web_search", library.search, step, RESULTS_PER_SEARCH,
                            kind="tool")
            for hit in hits:
                page = run.call("fetch_source", upstream.fetch, hit["url"],
                                kind="tool", retries=FETCH_RETRIES, backoff=0.1)
                summaries.append(run.call("summarise", model.summarise, page, kind="llm"))
        report = run.call("synthesise", model.synthesise, question, summaries, kind="llm")
        run.decide("publish", reason=f"confidence {report['confidence']}", model=model.name)
        document = run.call("write_report", write_report, report, kind="tool")
        result = {"question": question, "sources": len(summaries), **document}
        run.complete(result)
    return {**result, "outcome": run.outcome}
