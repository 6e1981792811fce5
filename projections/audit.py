"""Audit history: every command received, who sent it, and what came of it.

Commands are the messages that ask the service to change something:
``trigger_workflow`` and ``cancel_workflow``. (Queries such as ``ping`` and
``subscribe`` are not audited.) Each outcome is already an event, so the
audit trail is a fold of the log like any other view.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from adwd.events.domain import (
    AccessDenied,
    AuthAttempted,
    CancelRequested,
    ConnectionClosed,
    ConnectionOpened,
    RunQueued,
    TriggerDeduplicated,
    TriggerRejected,
)
from adwd.events.store import StoredEvent


@dataclass(frozen=True)
class AuditEntry:
    """One command and its outcome."""

    seq: int
    ts: float
    principal: str
    connection_id: str
    command: str  # trigger_workflow | cancel_workflow
    adw_id: str
    workflow_type: str
    outcome: str  # accepted | deduplicated | rejected | cancelling | not_found
    reason: str


@dataclass
class AuditProjection:
    """Entries folded since the last save (the read model holds the rest)."""

    pending: list[AuditEntry] = field(default_factory=list)
    count: int = 0

    def handlers(self) -> dict[type, Callable[[StoredEvent, Any], None]]:
        """The events this projection folds, and how."""
        return {
            RunQueued: self._trigger,
            TriggerDeduplicated: self._trigger,
            TriggerRejected: self._trigger,
            CancelRequested: self._cancel,
        }

    def _add(self, stored: StoredEvent, command: str, e: Any, outcome: str, reason: str) -> None:
        self.count += 1
        self.pending.append(
            AuditEntry(
                stored.seq,
                stored.ts,
                stored.principal,
                e.connection_id or stored.correlation_id,
                command,
                e.adw_id,
                getattr(e, "workflow_type", ""),
                outcome,
                reason,
            )
        )

    def _trigger(
        self, stored: StoredEvent, e: RunQueued | TriggerDeduplicated | TriggerRejected
    ) -> None:
        if isinstance(e, RunQueued):
            self._add(stored, "trigger_workflow", e, "accepted", "")
        elif isinstance(e, TriggerDeduplicated):
            self._add(stored, "trigger_workflow", e, "deduplicated", "already queued or running")
        else:
            self._add(stored, "trigger_workflow", e, "rejected", f"{e.error}: {e.message}")

    def _cancel(self, stored: StoredEvent, e: CancelRequested) -> None:
        self._add(stored, "cancel_workflow", e, e.outcome, e.reason)

    def take(self) -> list[AuditEntry]:
        """The entries not yet saved; the projection forgets them."""
        taken, self.pending = self.pending, []
        return taken


# -- the security trail (issue 13): connections, authentication, denials, commands --


@dataclass(frozen=True)
class SecurityEntry:
    """One line of ``adwd audit --security``: who, from where, did what, with what outcome."""

    seq: int
    ts: float
    principal: str
    address: str
    connection_id: str
    action: str  # connect | disconnect | authenticate | <message type> | trigger_workflow ...
    outcome: str  # opened | closed | success | failure | forbidden | rate_limited | accepted ...
    reason: str


def security_trail(events: Iterable[StoredEvent]) -> list[SecurityEntry]:
    """Fold the log into the security trail, commands included (with their address,
    from the connection they came on). A pure fold: the same log, the same trail."""
    addresses: dict[str, str] = {}
    trail: list[SecurityEntry] = []
    for stored in events:
        e = stored.event
        cid, address, action, outcome, reason = "", "", "", "", ""
        if isinstance(e, ConnectionOpened):
            addresses[e.connection_id] = e.address
            cid, action, outcome = e.connection_id, "connect", "opened"
            reason = e.origin and f"origin {e.origin}"
        elif isinstance(e, ConnectionClosed):
            cid, action, outcome = e.connection_id, "disconnect", "closed"
            reason = f"{e.code} {e.reason}".strip()
        elif isinstance(e, AuthAttempted):
            cid, address, action = e.connection_id, e.address, f"authenticate:{e.method}"
            outcome, reason = e.outcome, e.reason
        elif isinstance(e, AccessDenied):
            cid, address, action = e.connection_id, e.address, e.message_type or "connection"
            outcome, reason = e.outcome, e.permission or e.limit
            if e.retry_after is not None:
                reason += f" (retry after {e.retry_after:g} s)"
        elif isinstance(e, RunQueued | TriggerDeduplicated | TriggerRejected):
            cid, action, reason = e.connection_id or "", "trigger_workflow", e.adw_id
            outcome = _TRIGGER_OUTCOMES.get(type(e), "rejected")
        elif isinstance(e, CancelRequested):
            cid, action, outcome = e.connection_id or "", "cancel_workflow", e.outcome
            reason = e.adw_id
        else:
            continue
        trail.append(
            SecurityEntry(
                stored.seq,
                stored.ts,
                stored.principal,
                address or addresses.get(cid, ""),
                cid,
                action,
                outcome,
                reason,
            )
        )
    return trail


_TRIGGER_OUTCOMES: dict[type, str] = {RunQueued: "accepted", TriggerDeduplicated: "deduplicated"}
