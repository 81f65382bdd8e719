"""How a command looks to an agent, the same on every connector (docs/api.md, "Commands")."""

from __future__ import annotations


def command_message(command) -> dict:
    run = command.run
    return {
        "id": str(command.id),
        "kind": command.kind,
        "signal_name": command.signal_name or None,
        "payload": command.payload,
        "reason": command.reason,
        "requested_by": command.requested_by.get_username() if command.requested_by else None,
        "run": {"uuid": str(run.uuid), "workflow_id": run.workflow_id, "run_id": run.run_id},
        "created_at": command.created_at.isoformat(),
        "deadline": command.deadline.isoformat(),
        "attempt": command.attempts,
    }
