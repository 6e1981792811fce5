"""What the monitor needs from the log: the queue, the running runs, recent outcomes.

A pure fold of committed events (no clock of its own: ages are computed
from the events' ``ts`` against the ``now`` a caller passes), kept by the
MonitorActor. It also counts what /metrics reports about runs: started and
finished by workflow type and outcome, and each finished run's duration.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from adwd.events.domain import (
    AlertFired,
    AlertResolved,
    RunCompleted,
    RunFailed,
    RunQueued,
    RunStarted,
)
from adwd.events.store import StoredEvent

Outcome = Literal["completed", "failed", "cancelled"]
RunKey = tuple[str, str]  # (adw_id, workflow_type)

MIN_RUNS_FOR_RATE = 5  # fewer ended runs than this: no failure rate (one failure is not 100%)


@dataclass(frozen=True)
class Finished:
    """A run that ended: its type, outcome and duration (None if it never started)."""

    workflow_type: str
    outcome: Outcome
    duration_s: float | None


@dataclass
class RunHealth:
    """The queue (key -> queued ts), the running runs, the last ``window`` outcomes."""

    window: int = 20
    queued: dict[RunKey, float] = field(default_factory=dict)
    running: set[RunKey] = field(default_factory=set)
    recent: deque[bool] = field(default_factory=deque)  # True: failed

    def seed(self, queued: Iterable[tuple[RunKey, float]], running: Iterable[RunKey]) -> None:
        """Start from the runs the log already holds (the projections at start-up)."""
        self.queued.update(queued)
        self.running.update(running)

    def apply(self, stored: StoredEvent) -> tuple[str, str] | Finished | None:
        """Fold one event. Returns ``("started", type)`` for a start, a
        :class:`Finished` for an end, else None (what /metrics counts)."""
        e = stored.event
        if isinstance(e, RunQueued):
            self.queued[(e.adw_id, e.workflow_type)] = stored.ts
        elif isinstance(e, RunStarted):
            key = (e.adw_id, e.workflow_type)
            self.queued.pop(key, None)
            self.running.add(key)
            return ("started", e.workflow_type)
        elif isinstance(e, RunCompleted | RunFailed):
            key = (e.adw_id, e.workflow_type)
            self.queued.pop(key, None)
            self.running.discard(key)
            outcome: Outcome = "completed" if isinstance(e, RunCompleted) else "failed"
            if isinstance(e, RunFailed) and e.cancelled:
                outcome = "cancelled"  # someone chose it: not a failure of the service
            else:
                self.recent.append(outcome == "failed")
                while len(self.recent) > self.window:
                    self.recent.popleft()
            return Finished(e.workflow_type, outcome, e.duration_s)
        return None

    def queue_age(self, now: float) -> float:
        """Seconds the oldest queued run has waited (0 with an empty queue)."""
        return max(0.0, now - min(self.queued.values())) if self.queued else 0.0

    def failure_rate(self) -> float | None:
        """Share of the recent ended runs that failed (cancels excluded); None
        until at least MIN_RUNS_FOR_RATE runs ended."""
        if len(self.recent) < MIN_RUNS_FOR_RATE:
            return None
        return sum(self.recent) / len(self.recent)


ALERT_TYPES = ("alert_fired", "alert_resolved")  # what unresolved() needs of the log


def unresolved(events: Iterable[StoredEvent]) -> list[AlertFired]:
    """The alerts a log leaves firing (fired, never resolved), oldest first: a service
    that stopped while they fired. The next start resolves them, so every fire in the
    log has its resolve and a board never shows an alert nobody will end."""
    firing: dict[str, AlertFired] = {}
    for stored in events:
        e = stored.event
        if isinstance(e, AlertFired):
            firing[e.alert_id] = e
        elif isinstance(e, AlertResolved):
            firing.pop(e.alert_id, None)
    return list(firing.values())


def resolve_at_start(fired: AlertFired) -> AlertResolved:
    """The resolve of an alert left firing by the previous run of the service."""
    return AlertResolved(
        alert_id=fired.alert_id,
        rule=fired.rule,
        component=fired.component,
        message=f"Resolved: adwd restarted, and its monitor starts over ({fired.message})",
        value=None,
        threshold=fired.threshold,
    )
