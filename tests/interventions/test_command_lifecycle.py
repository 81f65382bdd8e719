"""The command lifecycle as a state machine: every operation the code performs on a Command row
(claims, advances, acknowledgements, receipts, expiry, the delivery task, the long-poll's
hand-out and the sweeper), in any order and at any time, keeps to `TRANSITIONS`.

Time is a clock the machine moves forward, so leases lapse, deadlines pass and redelivery
intervals run out as the rules say, not as the test's wall clock happens to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from interventions import tasks
from interventions.commands import CommandRefused, acknowledge, create_command, mark_received
from interventions.models import Command
from interventions.pull_channel import hand_out
from interventions.tasks import backoff_seconds, deliver_command
from interventions.vocabulary import (
    TERMINAL_STATES,
    TRANSITIONS,
    UNDELIVERED_STATES,
    CommandKind,
    CommandState,
)

pytest_plugins = ["tests.interventions.personas"]
pytestmark = pytest.mark.django_db

# Set here so that the machine does not depend on the environment; the delivery deadline is
# cut from an hour so that a few steps reach it.
LEASE = 120
STUCK_AFTER = 30
REDELIVER_AFTER = 60
DELIVERY_DEADLINE = 600
# How long after the previous step an operation runs: at once, a moment later, or just short
# of, onto or past one of those boundaries.
WAITS = st.sampled_from([0, 1]) | st.sampled_from(
    [seconds + step for seconds in (STUCK_AFTER, REDELIVER_AFTER, LEASE, DELIVERY_DEADLINE)
     for step in (-1, 0, 1)]
)
# States in which the command has been dispatched at least once, and received at least once.
PAST_DISPATCH = frozenset(
    {CommandState.DISPATCHED, CommandState.DELIVERED, CommandState.APPLIED, CommandState.REJECTED}
)
PAST_RECEIPT = frozenset({CommandState.DELIVERED, CommandState.APPLIED, CommandState.REJECTED})


class Clock:
    """Stands in for django.utils.timezone.now; only the machine moves it, and only forward."""

    def __init__(self) -> None:
        self.now = datetime.now(tz=timezone.get_current_timezone()).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    """What the machines of one test share: the run, the clock, the broker and what they saw."""

    run: object
    clock: Clock
    broker: object
    seen: set[str] = field(default_factory=set)


class CommandLifecycle(RuleBasedStateMachine):
    """One fresh command per example; each rule performs one operation and checks its own
    outcome against the state before it, the invariant checks the row after every step."""

    def __init__(self, world: World):
        super().__init__()
        self.world = world
        self.clock = world.clock
        self.command = create_command(world.run, CommandKind.SIGNAL, signal_name="nudge")
        self.before = self.row()

    def row(self) -> Command:
        return Command.objects.get(pk=self.command.pk)

    def saw(self, what: str) -> None:
        self.world.seen.add(what)

    def claimable(self, row: Command) -> bool:
        """Queued, or dispatched with no live claim on it."""
        if row.state == CommandState.QUEUED:
            return True
        return row.state == CommandState.DISPATCHED and (
            row.claimed_until is None or row.claimed_until < self.clock.now
        )

    def wait(self, seconds: int) -> None:
        self.clock.now += timedelta(seconds=seconds)

    # --- operations: those whose outcome depends on time run `later` seconds after the last ---

    @rule(later=WAITS, lease=st.sampled_from([0, 30, LEASE]))
    def claim(self, later, lease):
        self.wait(later)
        row = self.row()
        expected = self.claimable(row)
        lapsed = row.state == CommandState.DISPATCHED
        claimed = row.claim(lease)
        assert claimed == expected, (row.state, row.claimed_until, self.clock.now)
        if claimed:
            self.saw("claimed after the lease lapsed" if lapsed else "claimed")
            assert row.attempts == self.before.attempts + 1
            assert row.claimed_until == self.clock.now + timedelta(seconds=lease)
            assert row.dispatched_at == self.clock.now
        elif row.state == CommandState.DISPATCHED:
            self.saw("claim refused while the lease is live")

    @rule(state=st.sampled_from(CommandState.values))
    def advance(self, state):
        row = self.row()
        expected = state in TRANSITIONS[row.state]
        assert row.advance(state) == expected
        assert row.state == (state if expected else self.before.state)

    @rule(verdict=st.sampled_from(["applied", "rejected"]), detail=st.sampled_from(["", "ok"]))
    def acknowledge(self, verdict, detail):
        row = self.row()
        was = row.state
        if verdict in TRANSITIONS[was]:
            command, changed = acknowledge(row, verdict, detail)
            assert changed and command.state == verdict and command.ack_detail == detail
        elif was == verdict:
            command, changed = acknowledge(row, verdict, detail)
            assert not changed and command.state == verdict
            self.saw("a repeated verdict changed nothing")
        else:
            with pytest.raises(CommandRefused) as refused:
                acknowledge(row, verdict, detail)
            assert refused.value.field == "status"
            if was in TERMINAL_STATES:
                assert f"already {was}" in refused.value.message
                if was in (CommandState.APPLIED, CommandState.REJECTED):
                    self.saw("a conflicting verdict was refused")

    @rule()
    def mark_received(self):
        row = self.row()
        expected = CommandState.DELIVERED in TRANSITIONS[row.state]
        assert mark_received(row) == expected

    # The delivery task and the sweeper call it once the deadline has passed; here it may come
    # at any time, which `advance` must survive as well.
    @rule(later=WAITS)
    def expire(self, later):
        self.wait(later)
        row = self.row()
        expected = CommandState.EXPIRED in TRANSITIONS[row.state]
        notified = len(self.world.broker.notifications)
        tasks.expire(row)
        assert (row.state == CommandState.EXPIRED) == (
            expected or self.before.state == CommandState.EXPIRED
        )
        told = self.world.broker.notifications[notified:]
        assert told == ([("command_expired", str(row.pk))] if expected else [])

    @rule(later=WAITS)
    def delivery_task_runs(self, later):
        self.wait(later)
        row = self.row()
        now = self.clock.now
        deliver_command.run(str(row.pk))
        after = self.row()
        if row.state not in UNDELIVERED_STATES:
            assert after.state == row.state and after.attempts == row.attempts
        elif row.deadline <= now:
            assert after.state == CommandState.EXPIRED
        elif self.claimable(row):
            # The pull connector hands over and waits for the agent's long-poll.
            assert after.state == CommandState.DISPATCHED
            assert after.attempts == row.attempts + 1
            # Held until the sweeper may dispatch it again: a repeated message is harmless.
            assert after.claimed_until == after.next_attempt_at == now + timedelta(
                seconds=STUCK_AFTER
            )
            self.saw("the delivery task dispatched")
        else:
            assert (after.state, after.attempts) == (row.state, row.attempts)
            self.saw("a second delivery message was harmless")

    @rule(later=WAITS)
    def long_poll_hands_out(self, later):
        self.wait(later)
        row = self.row()
        now = self.clock.now
        expected = row.state == CommandState.DISPATCHED or (
            row.state == CommandState.DELIVERED
            and row.delivered_at < now - timedelta(seconds=REDELIVER_AFTER)
        )
        handed = [message["id"] for message in hand_out(row.agent_id)]
        assert (str(row.pk) in handed) == expected
        after = self.row()
        if expected:
            assert after.state == CommandState.DELIVERED and after.delivered_at == now
            self.saw("handed out again" if row.state == CommandState.DELIVERED else "handed out")
        else:
            assert after.delivered_at == row.delivered_at

    @rule(later=WAITS)
    def sweeper_runs(self, later):
        self.wait(later)
        row = self.row()
        now = self.clock.now
        start = len(self.world.broker.deliveries)
        tasks.sweep()
        requeued = str(row.pk) in {pk for pk, _ in self.world.broker.deliveries[start:]}
        after = self.row()
        undelivered = row.state in UNDELIVERED_STATES
        if undelivered and row.deadline <= now:
            assert after.state == CommandState.EXPIRED and not requeued
            self.saw("the sweeper expired it")
            return
        due = undelivered and row.next_attempt_at <= now and self.claimable(row)
        assert requeued == due, (row.state, row.next_attempt_at, row.claimed_until, now)
        if due:
            assert after.next_attempt_at == now + timedelta(seconds=STUCK_AFTER)
            self.saw("the sweeper re-enqueued it")
        else:
            assert after.next_attempt_at == row.next_attempt_at

    # --- what always holds -------------------------------------------------------------------

    @invariant()
    def keeps_to_the_lifecycle(self):
        row, before = self.row(), self.before
        self.saw(row.state)
        if row.state != before.state:
            assert row.state in TRANSITIONS[before.state], (before.state, row.state)
        if before.state in TERMINAL_STATES:
            assert (row.state, row.finished_at, row.delivered_at) == (
                before.state, before.finished_at, before.delivered_at
            )
        assert row.attempts >= before.attempts
        for stamp in ("dispatched_at", "delivered_at", "finished_at"):
            if getattr(before, stamp) is not None:
                assert getattr(row, stamp) is not None, stamp
        assert (row.finished_at is not None) == (row.state in TERMINAL_STATES)
        if row.state in PAST_DISPATCH:
            assert row.dispatched_at is not None
        if row.state in PAST_RECEIPT:
            assert row.delivered_at is not None
        self.before = row


@pytest.fixture
def world(running_run, broker, settings, monkeypatch) -> World:
    settings.COMMAND_CLAIM_LEASE_SECONDS = LEASE
    settings.COMMAND_STUCK_AFTER_SECONDS = STUCK_AFTER
    settings.COMMAND_PULL_REDELIVER_SECONDS = REDELIVER_AFTER
    settings.COMMAND_DELIVERY_DEADLINE_SECONDS = DELIVERY_DEADLINE
    clock = Clock()
    monkeypatch.setattr(timezone, "now", clock)
    return World(running_run, clock, broker)


def test_every_sequence_of_operations_keeps_a_command_to_its_lifecycle(world):
    run_state_machine_as_test(
        lambda: CommandLifecycle(world),
        settings=hypothesis_settings(
            max_examples=250, stateful_step_count=12, deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            # The same sequences on every run, so that the coverage check below cannot flake.
            derandomize=True, database=None,
        ),
    )
    # The machine is only as good as what it reached: every state, and each branch of the
    # operations whose outcome depends on time.
    assert set(CommandState.values) <= world.seen
    assert {
        "claimed", "claimed after the lease lapsed", "claim refused while the lease is live",
        "a repeated verdict changed nothing", "a conflicting verdict was refused",
        "the delivery task dispatched", "a second delivery message was harmless",
        "handed out", "handed out again", "the sweeper expired it", "the sweeper re-enqueued it",
    } <= world.seen


# --- the delivery task's view of the lifecycle ---------------------------------------------


def test_a_repeated_delivery_message_does_not_dispatch_the_command_again(running_run, broker):
    command = create_command(running_run, CommandKind.PAUSE)
    deliver_command.run(str(command.pk))
    deliver_command.run(str(command.pk))
    command.refresh_from_db()
    assert (command.state, command.attempts) == (CommandState.DISPATCHED, 1)


def test_the_sweeper_dispatches_again_a_command_the_agent_never_picked_up(
    running_run, broker, settings
):
    command = create_command(running_run, CommandKind.PAUSE)
    deliver_command.run(str(command.pk))
    # COMMAND_STUCK_AFTER_SECONDS later, the agent has still not polled:
    a_while_ago = timezone.now() - timedelta(seconds=settings.COMMAND_STUCK_AFTER_SECONDS + 1)
    Command.objects.filter(pk=command.pk).update(
        next_attempt_at=a_while_ago, claimed_until=a_while_ago
    )
    tasks.sweep()
    assert broker.deliveries == [(str(command.pk), "pull")]
    deliver_command.run(str(command.pk))
    command.refresh_from_db()
    assert (command.state, command.attempts) == (CommandState.DISPATCHED, 2)


# --- retry backoff -----------------------------------------------------------------------


@pytest.fixture
def backoff_settings(settings):
    settings.COMMAND_RETRY_BACKOFF_BASE_SECONDS = 2
    settings.COMMAND_RETRY_BACKOFF_MAX_SECONDS = 300
    settings.CELERY_BROKER_VISIBILITY_TIMEOUT = 3600
    return settings


def test_backoff_doubles_with_each_attempt(backoff_settings):
    assert [backoff_seconds(attempt) for attempt in range(1, 8)] == [2, 4, 8, 16, 32, 64, 128]


def test_backoff_of_the_first_attempt_is_the_base(backoff_settings):
    assert backoff_seconds(0) == backoff_seconds(1) == 2


def test_backoff_stops_growing_at_its_maximum(backoff_settings):
    assert backoff_seconds(9) == backoff_seconds(10) == backoff_seconds(10_000) == 300


def test_backoff_stays_within_half_the_brokers_visibility_timeout(backoff_settings):
    # A retry whose countdown outlived the visibility timeout would be delivered twice.
    backoff_settings.CELERY_BROKER_VISIBILITY_TIMEOUT = 100
    assert backoff_seconds(5) == 32
    assert backoff_seconds(6) == backoff_seconds(50) == 50


@given(
    attempt=st.integers(-5, 100_000),
    base=st.integers(0, 60),
    maximum=st.integers(0, 7200),
    visibility=st.integers(2, 86_400),
)
@hypothesis_settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_backoff_never_reaches_the_visibility_timeout_and_never_shrinks(
    backoff_settings, attempt, base, maximum, visibility
):
    backoff_settings.COMMAND_RETRY_BACKOFF_BASE_SECONDS = base
    backoff_settings.COMMAND_RETRY_BACKOFF_MAX_SECONDS = maximum
    backoff_settings.CELERY_BROKER_VISIBILITY_TIMEOUT = visibility
    delay = backoff_seconds(attempt)
    assert 0 <= delay <= min(maximum, visibility / 2) < visibility
    assert backoff_seconds(attempt + 1) >= delay
