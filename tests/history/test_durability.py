"""The durability panel (`GET /runs/<uuid>/durability`): gaps, redone work and restarts from
scratch, as docs/durability.md states the rules; access; escaping."""

from __future__ import annotations

import random
import re
import uuid

import pytest

from access.models import Token
from history.models import Run
from history.seeding import bulk_load, scenario
from tests.builders import BASE_TIME, at, event

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert(1)</script>"


def activity(first_id: int, key: str | None, *, workflow_id="wf-1", run_id="run-1",
             activity_type="charge_card", input=None, key_on="completion") -> list[dict]:
    """activity.scheduled, activity.started and activity.completed from `first_id` on."""
    scheduled = {"activity_type": activity_type, "input": input or {"amount": 10}}
    completed = {"output": {"ok": True}}
    if key is not None:
        (completed if key_on == "completion" else scheduled)["activity_key"] = key
    ids = dict(workflow_id=workflow_id, run_id=run_id)
    return [
        event(first_id, "activity.scheduled", attributes=scheduled, **ids),
        event(first_id + 1, "activity.started", refs={"scheduled": first_id}, **ids),
        event(first_id + 2, "activity.completed", attributes=completed,
              refs={"scheduled": first_id, "started": first_id + 1}, **ids),
    ]


def run_of(events: list[dict], *, start: float = 0, outcome: str | None = None,
           workflow_id="wf-1", run_id="run-1") -> list[dict]:
    """workflow.started at `start` seconds, then `events` renumbered after it, then `outcome`."""
    ids = dict(workflow_id=workflow_id, run_id=run_id)
    history = [event(1, "workflow.started", time=at(start), **ids)]
    for item in events:
        history.append({**item, **ids, "time": at(start + item["event_id"])})
    if outcome:
        last = max(item["event_id"] for item in history) + 1
        history.append(event(last, outcome, time=at(start + last), **ids))
    return history


def panel(client, run: Run, **headers):
    return client.get(f"/runs/{run.uuid}/durability", headers=headers)


def findings(response) -> list[str]:
    """The class of each finding listed, in order."""
    assert response.status_code == 200, response.content[:2000]
    body = response.content.decode()
    return [part.split('"', 1)[0] for part in body.split('<li class="finding ')[1:]]


def finding_text(response, rule: str) -> str:
    body = response.content.decode()
    return body.split(f'<li class="finding {rule}">', 1)[1].split("</li>", 1)[0]



def store(ingest, token, events) -> Run:
    assert ingest(token, events).status_code == 200
    first = events[0]
    return Run.objects.get(workflow_id=first["workflow_id"], run_id=first["run_id"])


# --- a clean run, methods, sign-in, access --------------------------------------------------


def test_a_clean_run_reports_nothing(ingest, agent_token, as_bob):
    run = store(ingest, agent_token, run_of(activity(2, "a") + activity(5, "b"),
                                            outcome="workflow.completed"))

    response = panel(as_bob, run)

    assert findings(response) == []
    assert "No gaps, redone work or restarts found." in response.content.decode()


def test_a_realistic_clean_run_reports_nothing(support_agent, as_bob):
    token = Token.issue(agent=support_agent)[0]
    rng = random.Random(11)
    bulk_load(token, [scenario("support", "wf-real", "r1", BASE_TIME, rng, steps=12,
                               close=False)])
    run = Run.objects.get(workflow_id="wf-real")

    assert findings(panel(as_bob, run)) == []


def test_it_answers_only_the_panel_to_htmx_and_a_page_without_it(ingest, agent_token, as_bob):
    run = store(ingest, agent_token, run_of(activity(2, "a")))

    body = panel(as_bob, run, **{"HX-Request": "true"}).content.decode()
    assert "<html" not in body
    assert body.lstrip().startswith('<section id="durability"')
    page = panel(as_bob, run).content.decode()
    assert "<html" in page
    assert '<section id="durability"' in page


def test_it_refuses_post(ingest, agent_token, as_bob):
    run = store(ingest, agent_token, run_of(activity(2, "a")))

    assert as_bob.post(f"/runs/{run.uuid}/durability").status_code == 405


def test_an_anonymous_visitor_is_sent_to_sign_in(ingest, agent_token, client):
    run = store(ingest, agent_token, run_of(activity(2, "a")))

    response = panel(client, run)

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_an_outsider_gets_404(ingest, agent_token, client, charlie):
    run = store(ingest, agent_token, run_of(activity(2, "a") + activity(5, "a")))
    client.force_login(charlie)

    for headers in ({}, {"HX-Request": "true"}):
        response = panel(client, run, **headers)
        assert response.status_code == 404
        assert b"completed 2 times" not in response.content


def test_a_malformed_or_unknown_uuid_is_404(as_bob):
    assert as_bob.get("/runs/nope/durability").status_code == 404
    assert as_bob.get(f"/runs/{uuid.uuid4()}/durability").status_code == 404


# --- gaps ---------------------------------------------------------------------------------------


def test_a_missing_event_is_reported_with_a_link_before_it(ingest, agent_token, as_bob):
    events = [e for e in run_of(activity(2, "a") + activity(5, "b")) if e["event_id"] != 4]
    run = store(ingest, agent_token, events)

    response = panel(as_bob, run)

    assert findings(response) == ["gap"]
    text = finding_text(response, "gap")
    assert "event 4 not received" in text
    assert f'href="/runs/{run.uuid}/?event=3#event-3">#3</a>' in text


def test_each_missing_range_is_one_finding(ingest, agent_token, as_bob):
    events = [e for e in run_of(activity(2, "a") + activity(5, "b") + activity(8, "c"))
              if e["event_id"] not in (3, 4, 5, 9)]
    run = store(ingest, agent_token, events)

    response = panel(as_bob, run)

    body = response.content.decode()
    assert findings(response) == ["gap", "gap"]
    assert "events 3 to 5 not received" in body
    assert "event 9 not received" in body


def test_a_gap_closes_when_the_event_arrives(ingest, agent_token, as_bob):
    events = run_of(activity(2, "a"))
    run = store(ingest, agent_token, [e for e in events if e["event_id"] != 3])
    assert findings(panel(as_bob, run)) == ["gap"]

    assert ingest(agent_token, [e for e in events if e["event_id"] == 3]).status_code == 200

    assert findings(panel(as_bob, run)) == []


# --- redone work --------------------------------------------------------------------------------


def test_the_same_key_completed_twice_in_a_run_is_redone_work(ingest, agent_token, as_bob):
    run = store(ingest, agent_token, run_of(activity(2, "charge-42") + activity(5, "charge-42")))

    response = panel(as_bob, run)

    assert findings(response) == ["redone_work"]
    text = finding_text(response, "redone_work")
    assert "charge-42 completed 2 times in this run" in text
    assert f'href="/runs/{run.uuid}/?event=4#event-4">#4</a>' in text
    assert f'href="/runs/{run.uuid}/?event=7#event-7">#7</a>' in text


def test_a_key_on_the_scheduled_event_names_the_unit(ingest, agent_token, as_bob):
    events = activity(2, "ship-7", key_on="scheduled") + activity(5, "ship-7", key_on="scheduled")
    run = store(ingest, agent_token, run_of(events))

    response = panel(as_bob, run)

    assert findings(response) == ["redone_work"]
    assert "ship-7 completed 2 times in this run" in response.content.decode()


def test_without_a_key_the_type_and_input_name_the_unit(ingest, agent_token, as_bob):
    events = (activity(2, None, input={"to": "x"}) + activity(5, None, input={"to": "x"})
              + activity(8, None, input={"to": "y"}))
    run = store(ingest, agent_token, run_of(events))

    response = panel(as_bob, run)

    assert findings(response) == ["redone_work"]
    assert "charge_card (same input) completed 2 times in this run" in response.content.decode()


def test_different_keys_are_different_units(ingest, agent_token, as_bob):
    run = store(ingest, agent_token, run_of(activity(2, "poll-1") + activity(5, "poll-2")))

    assert findings(panel(as_bob, run)) == []


def test_work_also_completed_by_a_completed_run_of_the_workflow_is_redone(ingest, agent_token,
                                                                         as_bob):
    first = store(ingest, agent_token, run_of(activity(2, "charge-42"), run_id="a",
                                              outcome="workflow.completed"))
    second = store(ingest, agent_token, run_of(activity(2, "charge-42"), run_id="b", start=100))

    response = panel(as_bob, second)

    assert findings(response) == ["redone_work"]
    text = finding_text(response, "redone_work")
    assert "charge-42 also completed in run a" in text
    assert f'href="/runs/{second.uuid}/?event=4#event-4">#4</a>' in text
    assert f'href="/runs/{first.uuid}/?event=4#event-4">a #4</a>' in text


def test_runs_of_another_namespace_are_never_compared(ingest, agent_token, foreign_agent_token,
                                                      as_bob):
    store(ingest, foreign_agent_token, run_of(activity(2, "charge-42"), run_id="theirs",
                                              outcome="workflow.failed"))
    run = store(ingest, agent_token, run_of(activity(2, "charge-42"), run_id="ours", start=100))

    response = panel(as_bob, run)

    assert findings(response) == []
    assert b"theirs" not in response.content


def test_runs_of_another_workflow_id_are_never_compared(ingest, agent_token, as_bob):
    store(ingest, agent_token, run_of(activity(2, "charge-42"), workflow_id="wf-other",
                                      outcome="workflow.failed"))
    run = store(ingest, agent_token, run_of(activity(2, "charge-42"), start=100))

    assert findings(panel(as_bob, run)) == []


# --- restart from scratch -----------------------------------------------------------------------


@pytest.fixture
def restarted(ingest, agent_token) -> tuple[Run, Run]:
    """Run a of wf-1 completed two keyed activities and failed; run b started over and
    completed the same two and one more."""
    failed = store(ingest, agent_token, run_of(activity(2, "fetch") + activity(5, "charge"),
                                               run_id="a", outcome="workflow.failed"))
    again = store(ingest, agent_token, run_of(
        activity(2, "fetch") + activity(5, "charge") + activity(8, "email"),
        run_id="b", start=100, outcome="workflow.completed",
    ))
    return failed, again


def test_a_restart_from_scratch_is_reported_on_the_later_run(as_bob, restarted):
    _, again = restarted

    response = panel(as_bob, again)

    assert findings(response) == ["restart_from_scratch"]
    text = finding_text(response, "restart_from_scratch")
    assert "repeats 2 completed activities of run a, which ended failed without completing" \
        in text
    assert f'href="/runs/{again.uuid}/?event=4#event-4">#4</a>' in text
    assert f'href="/runs/{again.uuid}/?event=7#event-7">#7</a>' in text
    assert "event=10" not in text


@pytest.mark.parametrize("outcome", ["workflow.cancelled", "workflow.terminated",
                                     "workflow.timed_out"])
def test_every_unfinished_ending_counts_as_a_restart(ingest, agent_token, as_bob, outcome):
    store(ingest, agent_token, run_of(activity(2, "fetch"), run_id="a", outcome=outcome))
    again = store(ingest, agent_token, run_of(activity(2, "fetch"), run_id="b", start=100))

    assert findings(panel(as_bob, again)) == ["restart_from_scratch"]


def test_the_failed_run_itself_reports_the_later_runs_repeat_as_redone_work(as_bob, restarted):
    failed, _ = restarted

    response = panel(as_bob, failed)

    assert findings(response) == ["redone_work", "redone_work"]
    assert "fetch also completed in run b" in response.content.decode()


def test_a_later_failed_run_is_not_a_restart_of_this_one(ingest, agent_token, as_bob):
    first = store(ingest, agent_token, run_of(activity(2, "fetch"), run_id="a", start=100,
                                              outcome="workflow.completed"))
    store(ingest, agent_token, run_of(activity(2, "fetch"), run_id="b", start=200,
                                      outcome="workflow.failed"))

    assert "restart_from_scratch" not in findings(panel(as_bob, first))


# --- wording and escaping -------------------------------------------------------------------


def test_findings_are_named_in_words(as_bob, ingest, agent_token, restarted):
    _, again = restarted
    redone = store(ingest, agent_token, run_of(activity(2, "k") + activity(5, "k"),
                                               workflow_id="wf-r"))
    gappy = store(ingest, agent_token, [e for e in run_of(activity(2, "g"), workflow_id="wf-g")
                                        if e["event_id"] != 3])

    def names(run: Run) -> list[str]:
        return re.findall(r"<strong>(.*?)</strong>", panel(as_bob, run).content.decode())

    assert names(gappy) == ["Gap"]
    assert names(redone) == ["Redone work"]
    assert names(again) == ["Restart from scratch"]


def test_an_agent_supplied_key_is_escaped(ingest, agent_token, as_bob):
    run = store(ingest, agent_token, run_of(activity(2, SCRIPT) + activity(5, SCRIPT)))

    body = panel(as_bob, run).content.decode()

    assert SCRIPT not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt; completed 2 times" in body
