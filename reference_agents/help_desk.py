"""The make-believe help desk that the support agents work on: a knowledge base, customer
records with their orders, a refund ledger, an e-mail outbox, and the stream of tickets.

Everything is generated from a seed, in memory, without network: customer `C-0007` and ticket
number 12 are the same in every process. The ledger and the outbox are the desk's side effects;
they are per process and only there so that a tool does something observable.
"""

from __future__ import annotations

import random
import threading

from reference_agents.model import WORD

ARTICLES: tuple[dict, ...] = (
    {"id": "KB-101", "title": "Refund policy", "tags": ["refund", "policy"],
     "text": "Orders can be refunded within 30 days of purchase. Refunds over 100 EUR are "
             "reviewed by a person before they are paid. Money returns to the original card "
             "within 5 working days."},
    {"id": "KB-102", "title": "Charged twice for one order", "tags": ["refund", "billing"],
     "text": "A double charge is usually a pending authorisation that drops off within 3 days. "
             "If both charges settle, refund the duplicate."},
    {"id": "KB-201", "title": "Where is my parcel?", "tags": ["shipping"],
     "text": "Parcels ship within 2 working days. The tracking link is in the dispatch e-mail. "
             "Parcels late by more than 10 days are reshipped free of charge."},
    {"id": "KB-202", "title": "Delivery to a new address", "tags": ["shipping", "account"],
     "text": "The delivery address can be changed until the order is dispatched."},
    {"id": "KB-301", "title": "Resetting your password", "tags": ["account"],
     "text": "Use the reset link on the sign-in page. Accounts lock for 15 minutes after five "
             "failed sign-ins. Two-factor codes can be reset by support after an identity "
             "check."},
    {"id": "KB-302", "title": "Changing your e-mail address", "tags": ["account"],
     "text": "The e-mail address is changed under Settings, Profile. A confirmation goes to "
             "both addresses."},
    {"id": "KB-401", "title": "Invoices and VAT receipts", "tags": ["billing"],
     "text": "Invoices are under Orders. VAT receipts can be reissued with a new billing "
             "address within the same tax year."},
    {"id": "KB-402", "title": "Changing your plan", "tags": ["billing"],
     "text": "Upgrades apply at once and are prorated. Downgrades apply at the next renewal."},
)

FIRST_NAMES = ("Ada", "Bruno", "Chiara", "Dev", "Elif", "Farah", "Goran", "Hana", "Ines",
               "Jonas", "Kemal", "Lea", "Mateo", "Noor", "Oskar", "Priya")
LAST_NAMES = ("Okafor", "Lindqvist", "Moreau", "Tanaka", "Novak", "Haddad", "Schmidt",
              "Costa", "Ivanova", "Byrne")
CUSTOMERS = 40

# (intent, subject, body): {order} and {amount} are filled in from the customer's orders.
TICKET_TEMPLATES: tuple[tuple[str, str, str], ...] = (
    ("refund", "Refund for order {order}",
     "I returned order {order} last week and would like my money back ({amount} EUR)."),
    ("refund", "Charged twice", "My card was charged twice for order {order}, {amount} EUR "
     "each time. Please refund the duplicate."),
    ("shipping", "Parcel not arrived", "Order {order} has not arrived and the tracking page "
     "has not changed for a week."),
    ("account", "Locked out", "I cannot log in since this morning, it says my account is "
     "locked. Can you help?"),
    ("billing", "VAT receipt", "Please send a VAT receipt for order {order} with our new "
     "billing address."),
    ("other", "Feature idea", "It would be great to export my order history as a spreadsheet."),
)


def customer(customer_id: str) -> dict:
    """The record of customer `C-0001` … `C-0040`; KeyError for any other id."""
    number = int(customer_id.removeprefix("C-")) if customer_id.startswith("C-") else 0
    if not 1 <= number <= CUSTOMERS:
        raise KeyError(f"no customer {customer_id}")
    rng = random.Random(f"customer-{number}")  # noqa: S311 - made-up data, same every time
    name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
    orders = [
        {"order_id": f"O-{number:04d}-{n}", "amount": rng.choice([19, 49, 89, 129, 240, 560]),
         "currency": "EUR", "days_ago": rng.choice([2, 6, 12, 25, 45, 90])}
        for n in range(1, rng.randint(2, 4) + 1)
    ]
    return {"customer_id": customer_id, "name": name, "tier": rng.choice(["basic", "plus"]),
            "email": f"{name.lower().replace(' ', '.')}@example.com", "orders": orders}


def ticket(number: int, *, intent: str | None = None) -> dict:
    """Ticket `number` of the stream; with `intent`, the next ticket of that kind from there."""
    candidates = [t for t in TICKET_TEMPLATES if intent is None or t[0] == intent]
    if not candidates:
        raise ValueError(f"no tickets of intent {intent!r}")
    rng = random.Random(f"ticket-{number}-{intent}")  # noqa: S311 - made-up data
    kind, subject, body = candidates[number % len(candidates)]
    owner = customer(f"C-{rng.randint(1, CUSTOMERS):04d}")
    orders = owner["orders"]
    # Three refund tickets in four concern a recent order, so most reach the approval step;
    # the others ask too late and are turned down by policy.
    recent = [o for o in orders if o["days_ago"] <= 30]
    order = rng.choice(recent if kind == "refund" and recent and rng.random() < 0.75
                       else orders)
    fill = {"order": order["order_id"], "amount": order["amount"]}
    return {"ticket_id": f"T-{1000 + number}", "customer_id": owner["customer_id"],
            "order_id": order["order_id"], "subject": subject.format(**fill),
            "body": body.format(**fill)}


def search_kb(query: str, limit: int = 3) -> list[dict]:
    """Articles ranked by how many of the query's words their title, tags and text share."""
    words = set(WORD.findall(query.lower()))
    scored = []
    for article in ARTICLES:
        text = " ".join([article["title"], *article["tags"], article["text"]]).lower()
        score = sum(2 if word in article["tags"] else 1 for word in words if word in text)
        if score:
            scored.append((score, article["id"], article))
    scored.sort(key=lambda found: (-found[0], found[1]))
    return [{"id": a["id"], "title": a["title"], "tags": a["tags"], "text": a["text"]}
            for _, _, a in scored[:limit]]


class Desk:
    """The desk's side effects in this process: refunds paid and e-mails sent."""

    def __init__(self):
        self._lock = threading.Lock()
        self.refunds: list[dict] = []
        self.outbox: list[dict] = []

    def issue_refund(self, customer_id: str, order_id: str, amount: float,
                     currency: str = "EUR") -> dict:
        owner = customer(customer_id)
        if not any(order["order_id"] == order_id for order in owner["orders"]):
            raise ValueError(f"order {order_id} is not {customer_id}'s")
        with self._lock:
            refund = {"refund_id": f"R-{len(self.refunds) + 1:05d}", "customer_id": customer_id,
                      "order_id": order_id, "amount": amount, "currency": currency}
            self.refunds.append(refund)
        return refund

    def send_email(self, to: str, subject: str, body: str) -> dict:
        with self._lock:
            message = {"message_id": f"M-{len(self.outbox) + 1:05d}", "to": to,
                       "subject": subject, "chars": len(body)}
            self.outbox.append({**message, "body": body})
        return message


DESK = Desk()
