"""A deterministic stand-in for a language model: the reference agents' "LLM".

No network, no weights. Each answer is worked out from its input by keyword rules, and where a
real model would vary (wording, a confidence figure, a token count) the variation comes from a
random generator seeded with the model's seed and a SHA-256 of the prompt. The same prompt
therefore gets the same answer in every process and on every run, which is what lets an agent
that crashed be replayed and checked against its recorded history.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time

# Which intent a support ticket has: the first rule with a matching word wins.
INTENT_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("refund", ("refund", "money back", "charged twice", "double charge", "overcharged",
                "reimburse")),
    ("shipping", ("delivery", "shipping", "tracking", "parcel", "arrived", "late")),
    ("account", ("password", "log in", "login", "locked", "two-factor", "2fa", "email address")),
    ("billing", ("invoice", "receipt", "vat", "billing address", "plan")),
)
WORD = re.compile(r"[a-z0-9]+")


class FakeModel:
    """Answers the few kinds of prompt the reference agents ask, the same way every time."""

    def __init__(self, name: str = "fake-1", seed: int = 7, pace: float = 0.0):
        """`pace` scales a real model's thinking time, 0.3 to 2 seconds per answer: 0 (the
        default, for tests) answers at once; the demo uses 1, so that runs take a while and
        can be watched, paused or cancelled while they work."""
        self.name = name
        self.seed = seed
        self.pace = pace

    def _rng(self, task: str, *parts: object) -> random.Random:
        prompt = json.dumps([task, *parts], sort_keys=True, default=str).encode()
        digest = hashlib.sha256(prompt).digest()
        return random.Random(int.from_bytes(digest[:8], "big") ^ self.seed)  # noqa: S311

    def _respond(self, rng: random.Random, prompt: object, answer: dict) -> dict:
        """The answer with its token usage, after the model's thinking time (see `pace`)."""
        thinking = rng.uniform(0.3, 2.0)  # drawn even at pace 0: answers must not depend on it
        if self.pace > 0:
            time.sleep(thinking * self.pace)
        words = len(WORD.findall(json.dumps(prompt, default=str).lower()))
        out = len(WORD.findall(json.dumps(answer, default=str).lower()))
        usage = {"input_tokens": words + rng.randint(40, 90), "output_tokens": out + 5}
        return {**answer, "usage": usage}

    # --- support ------------------------------------------------------------------------

    def classify_ticket(self, ticket: dict) -> dict:
        """The ticket's intent (refund, shipping, account, billing or other) and why."""
        text = f"{ticket.get('subject', '')} {ticket.get('body', '')}".lower()
        rng = self._rng("classify", text)
        for intent, words in INTENT_RULES:
            hit = next((word for word in words if word in text), None)
            if hit:
                answer = {"intent": intent, "confidence": round(rng.uniform(0.82, 0.98), 2),
                          "reason": f"the customer writes {hit!r}"}
                break
        else:
            answer = {"intent": "other", "confidence": round(rng.uniform(0.5, 0.7), 2),
                      "reason": "no known intent in the ticket"}
        return self._respond(rng, ticket, answer)

    def search_query(self, ticket: dict, intent: str) -> str:
        """The knowledge-base query for a ticket: its intent and its three longest words."""
        # Ties broken by the word itself: a set's order changes with each process's hash seed.
        words = sorted(set(WORD.findall(ticket.get("body", "").lower())),
                       key=lambda word: (-len(word), word))
        return " ".join([intent, *sorted(words[:3])])

    def assess_refund(self, ticket: dict, customer: dict, articles: list[dict]) -> dict:
        """Whether the policy found allows a refund of the order the ticket is about."""
        rng = self._rng("assess", ticket, customer)
        order = next(
            (o for o in customer.get("orders", []) if o["order_id"] == ticket.get("order_id")),
            None,
        )
        policy = next((a for a in articles if "refund" in a.get("tags", [])), None)
        if order is None:
            answer = {"eligible": False, "amount": 0, "reason": "no such order on the account"}
        elif order["days_ago"] > 30:
            answer = {"eligible": False, "amount": 0, "order_id": order["order_id"],
                      "reason": f"ordered {order['days_ago']} days ago; refunds within 30 days"}
        else:
            answer = {"eligible": True, "amount": order["amount"], "currency": order["currency"],
                      "order_id": order["order_id"],
                      "reason": f"within 30 days ({policy['id'] if policy else 'policy'})"}
        return self._respond(rng, [ticket, customer], answer)

    def draft_reply(self, ticket: dict, customer: dict, outcome: str, articles: list[dict]) -> dict:
        """A reply to the customer saying what was done."""
        rng = self._rng("reply", ticket, outcome)
        greeting = rng.choice(["Hello", "Hi", "Dear"])
        sources = ", ".join(article["title"] for article in articles[:2]) or "our help centre"
        body = (
            f"{greeting} {customer.get('name', 'there')},\n\n{outcome}\n\n"
            f"More in: {sources}.\n\nKind regards,\nSupport"
        )
        answer = {"subject": f"Re: {ticket.get('subject', 'your request')}", "body": body}
        return self._respond(rng, ticket, answer)

    # --- research -----------------------------------------------------------------------

    def plan_research(self, question: str, depth: int = 4) -> dict:
        """Break a question into `depth` sub-questions, each a search query."""
        rng = self._rng("plan", question, depth)
        angles = ["background", "current figures", "main risks", "open disputes",
                  "recent changes", "who is affected"]
        chosen = rng.sample(angles, k=min(depth, len(angles)))
        topic = question.rstrip("?")
        answer = {"steps": [f"{topic}: {angle}" for angle in chosen]}
        return self._respond(rng, question, answer)

    def summarise(self, source: dict) -> dict:
        """Two sentences and the key facts of one source."""
        rng = self._rng("summarise", source.get("url"), source.get("text"))
        sentences = [s.strip() for s in source.get("text", "").split(".") if s.strip()]
        facts = sentences[: 1 + rng.randint(1, 2)]
        answer = {"url": source.get("url"), "summary": ". ".join(facts[:2]) + ".",
                  "facts": facts}
        return self._respond(rng, source, answer)

    def synthesise(self, question: str, summaries: list[dict]) -> dict:
        """A short report answering the question from the summaries, citing them."""
        rng = self._rng("synthesise", question, summaries)
        citations = [summary["url"] for summary in summaries if summary.get("url")]
        lines = [f"- {summary['summary']} [{n}]" for n, summary in enumerate(summaries, 1)]
        confidence = rng.choice(["low", "moderate", "high"])
        answer = {"title": question, "confidence": confidence,
                  "body": "\n".join(lines), "citations": citations}
        return self._respond(rng, question, answer)

    # --- operations ---------------------------------------------------------------------

    def diagnose(self, logs: list[str], metrics: dict) -> dict:
        """What the logs and metrics point at, and the remedy a hasty model would suggest."""
        rng = self._rng("diagnose", logs, metrics)
        errors = [line for line in logs if "ERROR" in line]
        culprit = errors[-1].split("service=")[-1].split()[0] if errors else "none"
        answer = {"culprit": culprit, "error_rate": metrics.get("error_rate"),
                  "remedy": "restart_service" if errors else "none",
                  "confidence": round(rng.uniform(0.6, 0.9), 2)}
        return self._respond(rng, logs, answer)
