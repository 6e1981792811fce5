"""Current state of each run: a deterministic fold of the log.

The source for recovery at start-up (which runs were waiting, which were in
flight) and for clients that join late.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from events.domain import RunCompleted, RunFailed, RunProgress, RunQueued, RunStarted
from events.store import StoredEvent

RunKey = tuple[str, str]


@dataclass
class RunView:
    """One run as the log tells it."""

    request: RunQueued
    queued_seq: int
    status: str = "queued"  # queued | running | completed | failed
    progress_percent: int = 0
    current_step: str = ""
    last_seq: int = 0


@dataclass
class RunsProjection:
    """Every run of the log, by ``(adw_id, workflow_type)``; a re-run replaces its view."""

    runs: dict[RunKey, RunView] = field(default_factory=dict)
    seq: int = 0

    def apply(self, stored: StoredEvent) -> None:
        """Fold one committed event."""
        self.seq = stored.seq
        event = stored.event
        if isinstance(event, RunQueued):
            key = (event.adw_id, event.workflow_type)
            self.runs[key] = RunView(event, stored.seq, last_seq=stored.seq)
            return
        if not isinstance(event, RunStarted | RunProgress | RunCompleted | RunFailed):
            return
        view = self.runs.get((event.adw_id, event.workflow_type))
        if view is None:
            return
        view.last_seq = stored.seq
        if isinstance(event, RunStarted):
            view.status = "running"
        elif isinstance(event, RunProgress):
            view.progress_percent = event.progress_percent
            view.current_step = event.current_step or view.current_step
        elif isinstance(event, RunCompleted):
            view.status, view.progress_percent = "completed", 100
        else:
            view.status = "failed"

    def waiting(self) -> list[RunView]:
        """Runs accepted but not started, oldest first."""
        return sorted(
            (v for v in self.runs.values() if v.status == "queued"), key=lambda v: v.queued_seq
        )

    def in_flight(self) -> list[RunView]:
        """Runs started but not ended."""
        return sorted(
            (v for v in self.runs.values() if v.status == "running"), key=lambda v: v.queued_seq
        )
