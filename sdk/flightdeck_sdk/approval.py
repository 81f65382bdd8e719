"""The outcome of an approval request, as Flightdeck's decision delivered it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Approval:
    request_id: str
    decision: str  # "approved" | "rejected" | "expired"
    comment: str = ""
    approver: str | None = None
    approvers: tuple[str, ...] = ()
    command_id: str | None = None

    @property
    def approved(self) -> bool:
        return self.decision == "approved"

    @classmethod
    def from_payload(cls, payload: dict, command_id: str | None = None) -> Approval:
        decision = payload.get("decision")
        if decision not in ("approved", "rejected", "expired"):
            decision = "rejected"  # anything unreadable is the safe side
        return cls(
            request_id=str(payload.get("request_id") or ""),
            decision=decision,
            comment=str(payload.get("comment") or ""),
            approver=payload.get("approver"),
            approvers=tuple(str(name) for name in payload.get("approvers") or ()),
            command_id=command_id or payload.get("command_id"),
        )

    def claim(self) -> tuple[str, dict]:
        """The claim event the agent records: its type and attributes."""
        kind = {"approved": "approval.granted", "rejected": "approval.rejected",
                "expired": "approval.expired"}[self.decision]
        return kind, {"request_id": self.request_id, "decision": self.decision,
                      "comment": self.comment, "approver": self.approver,
                      "approvers": list(self.approvers), "command_id": self.command_id}
