"""Current state of each run: a deterministic fold of the log.

The source for recovery at start-up (which runs were waiting, which were in
flight), for clients that join late, and for ``adwd inspect``/``replay``.
A re-run of the same ``(adw_id, workflow_type)`` replaces its view; the
log keeps every run.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from adwd.events.domain import (
    ResourceUsage,
    RunCompleted,
    RunFailed,
    RunProgress,
    RunQueued,
    RunStarted,
    StageChanged,
)
from adwd.events.store import StoredEvent

RunKey = tuple[str, str]
# Ended runs kept in memory (for late joiners and re-runs); older ones live on in
# views.db and the log. Bounds memory, and the work of loading at start-up.
KEEP_ENDED = 100


@dataclass
class RunView:
    """One run as the log tells it."""

    request: RunQueued
    queued_seq: int
    status: str = "queued"  # queued | running | completed | failed | cancelled
    progress_percent: int = 0
    current_step: str = ""
    last_seq: int = 0
    message: str = ""
    queued_ts: float = 0.0
    started_ts: float | None = None
    ended_ts: float | None = None
    duration_s: float | None = None
    pid: int = 0
    proc_start: int = 0
    expected_s: float | None = None
    exit_code: int | None = None
    cancelled: bool = False
    resource_usage: ResourceUsage | None = None
    stage: str = ""  # where this run left its card ("": it never moved it)

    @property
    def key(self) -> RunKey:
        """``(adw_id, workflow_type)``."""
        return (self.request.adw_id, self.request.workflow_type)


@dataclass
class RunsProjection:
    """Every run of the log, by ``(adw_id, workflow_type)``."""

    runs: dict[RunKey, RunView] = field(default_factory=dict)
    seq: int = 0
    ended: deque[RunKey] = field(default_factory=deque)  # unique keys, in order of ending
    dirty: set[RunKey] = field(default_factory=set, compare=False, repr=False)
    retired: list[RunView] = field(default_factory=list, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._handlers = self.handlers()

    def handlers(self) -> dict[type, Callable[[StoredEvent, Any], None]]:
        """The events this projection folds, and how."""
        return {
            RunQueued: self._queued,
            RunStarted: self._started,
            RunProgress: self._progress,
            RunCompleted: self._completed,
            RunFailed: self._failed,
            StageChanged: self._stage_changed,
        }

    def apply(self, stored: StoredEvent) -> None:
        """Fold one committed event."""
        self.seq = stored.seq
        handler = self._handlers.get(type(stored.event))
        if handler is not None:
            handler(stored, stored.event)

    def _view(self, stored: StoredEvent, e: Any) -> RunView | None:
        key = (e.adw_id, e.workflow_type)
        view = self.runs.get(key)
        if view is not None:
            view.last_seq = stored.seq
            self.dirty.add(key)
        return view

    def _queued(self, stored: StoredEvent, e: RunQueued) -> None:
        key = (e.adw_id, e.workflow_type)
        self.runs[key] = RunView(e, stored.seq, last_seq=stored.seq, queued_ts=stored.ts)
        self.dirty.add(key)

    def _started(self, stored: StoredEvent, e: RunStarted) -> None:
        view = self._view(stored, e)
        if view is not None:
            view.status = "running"
            view.started_ts = stored.ts
            view.pid, view.proc_start, view.expected_s = e.pid, e.proc_start, e.expected_s

    def _progress(self, stored: StoredEvent, e: RunProgress) -> None:
        view = self._view(stored, e)
        if view is not None:
            view.progress_percent = e.progress_percent
            view.current_step = e.current_step or view.current_step
            view.message = e.message or view.message

    def _completed(self, stored: StoredEvent, e: RunCompleted) -> None:
        view = self._view(stored, e)
        if view is not None:
            view.status, view.progress_percent, view.exit_code = "completed", 100, 0
            view.ended_ts, view.duration_s = stored.ts, e.duration_s
            view.resource_usage = e.resource_usage
            view.message = "completed"
            self._retire(view.key)

    def _failed(self, stored: StoredEvent, e: RunFailed) -> None:
        view = self._view(stored, e)
        if view is not None:
            # A cancelled run has its own terminal status: nothing failed.
            view.status = "cancelled" if e.cancelled else "failed"
            view.exit_code, view.cancelled = e.exit_code, e.cancelled
            view.ended_ts, view.duration_s = stored.ts, e.duration_s
            view.resource_usage = e.resource_usage
            view.message = e.reason
            self._retire(view.key)

    def _stage_changed(self, stored: StoredEvent, e: StageChanged) -> None:
        view = self._view(stored, e)
        if view is not None:
            view.stage = e.to_stage

    def card_stages(self) -> dict[str, str]:
        """Where each adw_id's card is: the stage its latest mover left it in.

        The one source of the card's stage: the live service, a restart, the
        HTTP read API and the scheduler all read it from this fold of
        ``stage_changed`` events, so they cannot disagree with what clients
        were sent.
        """
        stages: dict[str, str] = {}
        for view in sorted(self.runs.values(), key=lambda v: v.last_seq):
            if view.stage:
                stages[view.key[0]] = view.stage
        return stages

    def _retire(self, key: RunKey) -> None:
        """Keep the last KEEP_ENDED ended runs in memory; forget older ones."""
        if key in self.ended:
            self.ended.remove(key)
        self.ended.append(key)
        while len(self.ended) > KEEP_ENDED:
            old = self.ended.popleft()
            view = self.runs.pop(old)
            if old in self.dirty:  # its last change is not saved yet
                self.dirty.discard(old)
                self.retired.append(view)

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
