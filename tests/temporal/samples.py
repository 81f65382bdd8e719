"""Real Temporal histories for the tests, and the other spellings of them found in the wild.

data/reference_agent.json: the reference agent approving and issuing a refund, and
data/kitchen_sink.json: a workflow with an activity retried after a failure, a patch marker,
search attributes, a timer, an update, a signal and a child workflow. Both were exported from
a Temporal 1.32 dev server with `temporal workflow show -o json`.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

DATA = Path(__file__).parent / "data"
ENUM_PREFIXES = ("EVENT_TYPE_", "TASK_QUEUE_KIND_", "RETRY_STATE_", "PARENT_CLOSE_POLICY_",
                 "WORKFLOW_ID_REUSE_POLICY_", "TIMEOUT_TYPE_", "CONTINUE_AS_NEW_INITIATOR_",
                 "WORKFLOW_ID_CONFLICT_POLICY_", "INDEXED_VALUE_TYPE_")
INT64_KEYS = re.compile(r"(.*EventId|eventId|taskId|version|historySizeBytes)")


def history(name: str = "reference_agent") -> dict:
    return json.loads((DATA / f"{name}.json").read_text())


def history_bytes(name: str = "reference_agent") -> bytes:
    return (DATA / f"{name}.json").read_bytes()


def dumps(value) -> bytes:
    return json.dumps(value).encode()


def pascal(value: str) -> str:
    """EVENT_TYPE_WORKFLOW_EXECUTION_STARTED -> WorkflowExecutionStarted, as older tools and
    the Web UI's download spell Temporal's enums."""
    for prefix in ENUM_PREFIXES:
        if value.startswith(prefix):
            return "".join(word.capitalize() for word in value[len(prefix):].split("_"))
    return value


def legacy(value):
    """The history in the older spelling: PascalCase enums, 64-bit integers as numbers."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if isinstance(item, str) and INT64_KEYS.fullmatch(key) and item.isdigit():
                out[key] = int(item)
            else:
                out[key] = legacy(item)
        return out
    if isinstance(value, list):
        return [legacy(item) for item in value]
    if isinstance(value, str):
        return pascal(value)
    return value


def events(name: str = "reference_agent") -> list[dict]:
    return copy.deepcopy(history(name)["events"])
