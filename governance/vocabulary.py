"""The governance findings' enumerations. docs/event-schema.md has the one table of every
enumeration and docs/governance.md states each rule; a test checks they agree with this."""

from __future__ import annotations

from django.db import models


class Rule(models.TextChoices):
    # Of agents, read live from their settings (never stored as findings).
    AGENT_WITHOUT_OWNER = "agent_without_owner", "Agent without an owner"
    TOOLS_UNDECLARED = "tools_undeclared", "Agent without a declared allow-list"
    # Of runs, stored as Finding rows.
    GAP = "gap", "Gap"
    REDONE_WORK = "redone_work", "Redone work"
    RESTART_FROM_SCRATCH = "restart_from_scratch", "Restart from scratch"
    TOOL_OUTSIDE_ALLOW_LIST = "tool_outside_allow_list", "Tool outside the allow-list"
    PRIVILEGED_WITHOUT_APPROVAL = "privileged_without_approval", "Privileged tool without approval"
    CLAIM_CONTRADICTS_DECISION = "claim_contradicts_decision", "Approval claim contradicts decision"
    SECRET_EXPOSURE = "secret_exposure", "Secret exposure"


AGENT_RULES = (Rule.AGENT_WITHOUT_OWNER, Rule.TOOLS_UNDECLARED)
RUN_RULES = tuple(rule for rule in Rule if rule not in AGENT_RULES)
# Computed per workflow id by governance.durability_checks, replaced at each check.
DURABILITY_RULES = (Rule.GAP, Rule.REDONE_WORK, Rule.RESTART_FROM_SCRATCH)


class Outcome(models.TextChoices):
    """What became of a workflow id after an interruption (docs/governance.md)."""

    NOT_INTERRUPTED = "not_interrupted", "Not interrupted"
    RESUMED = "resumed", "Resumed"
    RESTARTED_FROM_SCRATCH = "restarted_from_scratch", "Restarted from scratch"
    LOST_STATE = "lost_state", "Lost state"


SURVIVED = (Outcome.RESUMED,)
DID_NOT_SURVIVE = (Outcome.RESTARTED_FROM_SCRATCH, Outcome.LOST_STATE)
