"""The fake model and the made-up world it works in are deterministic: the same input gives
the same answer in another process (what replaying a crashed agent depends on), and the
keyword rules decide as documented."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reference_agents import help_desk, library
from reference_agents.model import FakeModel

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = """
import json
from reference_agents import help_desk, library
from reference_agents.model import FakeModel
model = FakeModel()
ticket = help_desk.ticket(5)
print(json.dumps([model.classify_ticket(ticket),
                  [model.search_query(help_desk.ticket(n), "q") for n in range(12)],
                  model.plan_research("Why?", 4),
                  help_desk.customer("C-0007"), library.search("grid storage"),
                  model.summarise(library.page("https://news.example.com/a/1"))]))
"""


def test_answers_are_the_same_in_another_process():
    model = FakeModel()
    ticket = help_desk.ticket(5)
    here = [model.classify_ticket(ticket),
            [model.search_query(help_desk.ticket(n), "q") for n in range(12)],
            model.plan_research("Why?", 4),
            help_desk.customer("C-0007"), library.search("grid storage"),
            model.summarise(library.page("https://news.example.com/a/1"))]
    # PYTHONHASHSEED differs between processes: nothing may depend on hash().
    other = subprocess.run(  # noqa: S603 - this interpreter, our own code
        [sys.executable, "-c", SAMPLE], capture_output=True, text=True, check=True, cwd=ROOT,
        env={"PYTHONHASHSEED": "12345"},
    )

    assert json.loads(other.stdout) == json.loads(json.dumps(here))


@pytest.mark.parametrize(("body", "intent"), [
    ("Please refund order O-1, I want my money back", "refund"),
    ("I was charged twice for the same thing", "refund"),
    ("My parcel has not arrived and tracking is stuck", "shipping"),
    ("I am locked out and cannot log in", "account"),
    ("Can I get an invoice with VAT?", "billing"),
    ("Love the product, keep going", "other"),
])
def test_a_ticket_is_classified_by_its_words(body, intent):
    answer = FakeModel().classify_ticket({"subject": "", "body": body})

    assert answer["intent"] == intent
    assert answer["reason"]


def test_a_refund_is_assessed_against_the_thirty_day_policy():
    model = FakeModel()
    customer = {"customer_id": "C-1", "orders": [
        {"order_id": "O-new", "amount": 49, "currency": "EUR", "days_ago": 6},
        {"order_id": "O-old", "amount": 89, "currency": "EUR", "days_ago": 45}]}

    recent = model.assess_refund({"order_id": "O-new"}, customer, [])
    late = model.assess_refund({"order_id": "O-old"}, customer, [])
    unknown = model.assess_refund({"order_id": "O-other"}, customer, [])

    assert (recent["eligible"], recent["amount"]) == (True, 49)
    assert late["eligible"] is False and "30 days" in late["reason"]
    assert unknown["eligible"] is False


def test_a_different_seed_varies_the_wording_not_the_decision():
    ticket = help_desk.ticket(0, intent="refund")

    one, other = FakeModel(seed=1), FakeModel(seed=2)

    assert one.classify_ticket(ticket)["intent"] == other.classify_ticket(ticket)["intent"]
    assert one.classify_ticket(ticket) == FakeModel(seed=1).classify_ticket(ticket)


def test_a_flaky_page_fails_once_per_process_then_answers():
    url = next(result["url"] for n in range(50) for result in library.search(f"q{n}")
               if library.is_flaky(result["url"]))
    fetcher = library.Library()

    with pytest.raises(library.UpstreamError):
        fetcher.fetch(url)
    assert fetcher.fetch(url) == library.page(url)


def test_unknown_customers_are_refused():
    with pytest.raises(KeyError):
        help_desk.customer("C-9999")
    with pytest.raises(KeyError):
        help_desk.customer("someone")
