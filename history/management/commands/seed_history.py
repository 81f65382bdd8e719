"""Fill Flightdeck with realistic synthetic runs, through the same write path as the API."""

from __future__ import annotations

import random
import time
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from access.models import Agent, Namespace, Token
from history.ingest import ingest_batch
from history.models import Run
from history.seeding import (
    TOOLS,
    bulk_load,
    long_history,
    scenario,
    small_history,
    start_time,
)

AGENTS = [
    # namespace, agent, workflow type (the agents are left without owners: the agents page
    # flags that, and an admin can set one there)
    ("acme", "support-bot", "support"),
    ("acme", "billing-bot", "billing"),
    ("globex", "research-bot", "research"),
]


class Command(BaseCommand):
    help = (
        "Create namespaces, agents and realistic runs (LLM decisions, tool calls, retries, "
        "failures, timers, child runs, approvals, running runs, a gap and a restart from "
        "scratch); optionally one 51,200-event run and any number of 5-event runs."
    )

    def add_arguments(self, parser):
        parser.add_argument("--runs", type=int, default=40, help="Realistic runs (default 40).")
        parser.add_argument("--large", type=int, default=0, metavar="EVENTS",
                            help="Also one running run of this many events (e.g. 51200).")
        parser.add_argument("--small-runs", type=int, default=0, metavar="N",
                            help="Also N runs of 5 events each, loaded in bulk.")
        parser.add_argument("--seed", type=int, default=7, help="Random seed.")
        parser.add_argument("--dry-run", action="store_true", help="Say what would be made.")
        parser.add_argument("--if-empty", action="store_true",
                            help="Do nothing when any run exists already (for the demo).")

    def handle(self, *args, runs, large, small_runs, seed, dry_run, if_empty, **options):
        if min(runs, large, small_runs) < 0:
            raise CommandError("counts must not be negative")
        if if_empty and Run.objects.exists():
            if options["verbosity"] > 1:
                self.stdout.write("runs exist already; nothing seeded")
            return
        if dry_run:
            self.stdout.write(
                f"would create {runs} realistic runs, {1 if large else 0} run of {large} events "
                f"and {small_runs} runs of 5 events"
            )
            return
        rng = random.Random(seed)
        tokens = {}
        for slug, name, workflow_type in AGENTS:
            namespace, _ = Namespace.objects.get_or_create(slug=slug)
            agent, _ = Agent.objects.get_or_create(
                namespace=namespace, name=name,
                defaults={"allowed_tools": ["plan", *self._tools(workflow_type)],
                          "description": f"Synthetic {workflow_type} agent"},
            )
            token = agent.tokens.active().first() or Token.issue(agent=agent, name="seed")[0]
            tokens[workflow_type] = token
        began = time.monotonic()
        stored = self._realistic(tokens, runs, rng)
        if large:
            events = long_history(f"research-huge-{seed}", f"run-{rng.getrandbits(48):x}",
                                  large, start_time(days_ago=0.5), rng)
            stored += bulk_load(tokens["research"], iter([events]))
        if small_runs:
            stored += bulk_load(tokens["billing"], self._small(small_runs, seed, rng))
        elapsed = time.monotonic() - began
        if options["verbosity"] > 0:
            self.stdout.write(
                f"stored {stored} events in {elapsed:.1f}s; {Run.objects.count()} runs in all"
            )

    def _tools(self, workflow_type: str) -> list[str]:
        return TOOLS[workflow_type]

    def _send(self, token: Token, events: list[dict]) -> int:
        outcome = ingest_batch(
            token, events, max_attributes_bytes=settings.INGEST_MAX_ATTRIBUTES_BYTES
        )
        return outcome.count("stored")

    def _realistic(self, tokens: dict, count: int, rng: random.Random) -> int:
        stored = 0
        types = list(tokens)
        for number in range(count):
            workflow_type = types[number % len(types)]
            started = start_time(days_ago=rng.uniform(0, 6))
            workflow_id = f"{workflow_type}-{rng.getrandbits(40):010x}"
            running = number % 7 == 3
            events = scenario(workflow_type, workflow_id, f"run-{rng.getrandbits(48):012x}",
                              started, rng, steps=rng.randint(3, 9), close=not running)
            if number % 11 == 5 and len(events) > 8:
                events.pop(len(events) // 2)  # a gap: one event never arrived
            for first in range(0, len(events), 25):
                stored += self._send(tokens[workflow_type], events[first:first + 25])
        if count:
            stored += self._restart_from_scratch(tokens["support"], rng)
        return stored

    def _restart_from_scratch(self, token: Token, rng: random.Random) -> int:
        """A run that failed midway, then a new run of the same workflow id that redid the
        completed steps instead of resuming: the durability panel should flag it."""
        workflow_id = f"support-restarted-{rng.getrandbits(32):08x}"
        begun = start_time(days_ago=1)
        seed = rng.getrandbits(32)
        first = scenario("support", workflow_id, "run-first", begun, random.Random(seed),
                         steps=4, close=False)
        cut = first[: len(first) * 2 // 3]
        cut.append({**cut[-1], "event_id": len(cut) + 1, "type": "workflow.failed",
                    "time": cut[-1]["time"], "attributes": {"error": {"message": "pod evicted"}},
                    "refs": {}})
        cut[-1].pop("identity", None)
        second = scenario("support", workflow_id, "run-second", begun + timedelta(minutes=5),
                          random.Random(seed), steps=4)
        return self._send(token, cut) + self._send(token, second)

    def _small(self, count: int, seed: int, rng: random.Random):
        base = start_time(days_ago=30)
        for number in range(count):
            yield small_history(f"batch-{seed}-{number:07d}", "r1",
                                base + timedelta(seconds=number * 2), rng)
