"""Audit history: every command received, who sent it, and what came of it.

Commands are the messages that ask the service to change something:
``trigger_workflow`` and ``cancel_workflow``. (Queries such as ``ping`` and
``subscribe`` are not audited.) Each outcome is already an event, so the
audit trail is a fold of the log like any other view.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from adwd.events.domain import CancelRequested, RunQueued, TriggerDeduplicated, TriggerRejected
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
