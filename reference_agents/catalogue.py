"""Every reference agent, by name, and the namespaces they work in.

Each agent is one module declaring its identity (`NAME`, `NAMESPACE`, `WORKFLOW_TYPE`,
`DESCRIPTION`), its scope (`TOOLS`: the tools it may call; `PRIVILEGED`: those that need a
person's approval first), what it does wrong if anything (`MISBEHAVIOUR`, empty for the
well-behaved ones), how often it starts a run in the demo (`INTERVAL`, and optionally `LANES`:
how many runs it works on at once; `RESUMES = False` for one that abandons unfinished work
when its process restarts), and `job` / `execute` (see reference_agents.jobs).
`manage.py bootstrap_demo` registers each one with that scope.
"""

from __future__ import annotations

from types import ModuleType

from reference_agents import (
    claimed_approval,
    crash_resume,
    leaked_key,
    out_of_scope,
    research,
    restart_from_scratch,
    support,
    unapproved_refund,
)

NAMESPACES = {
    "support": "Customer support",
    "research": "Research and operations",
}

AGENTS: dict[str, ModuleType] = {
    module.NAME: module
    for module in (
        support,
        research,
        crash_resume,
        restart_from_scratch,
        out_of_scope,
        unapproved_refund,
        claimed_approval,
        leaked_key,
    )
}


def agent(name: str) -> ModuleType:
    """The agent module called `name`; KeyError naming the known ones otherwise."""
    try:
        return AGENTS[name]
    except KeyError:
        raise KeyError(f"no reference agent {name!r}; known: {', '.join(AGENTS)}") from None
