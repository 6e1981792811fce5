"""What earlier runs of each adw_id achieved, and how recoveries turned out.

A deterministic fold of the log, read by the scheduler for three decisions:

* dependencies: which stages a completed run of an adw_id covered (a build
  needs a completed plan of its adw_id);
* recovery: the last failure of each run, by ``error_id`` and by adw_id, so
  a ``recover`` message can name either;
* ``recovery_instructions``: how often each recovery option, after each
  error class, led to a completed run, and how long runs of a type take.

The scheduler keeps its own copy, folded from the same committed events as
the service's; ``adwd replay`` folds the log into a fresh one. The figures a
client was told are therefore the ones a replay up to that point gives.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from adwd.events.domain import ErrorReported, RunCompleted, RunFailed, RunQueued
from adwd.events.store import StoredEvent
from adwd.projections.metrics import RECENT
from adwd.projections.stages import WORKFLOW_STAGE

RunKey = tuple[str, str]
MAX_FAILURES = 2_000  # failures a recover can name by error_id (the newest)


@dataclass
class Failure:
    """The last failure of one run: what a recovery starts from."""

    error_id: str
    adw_id: str
    workflow_type: str
    error_class: str
    stage: str
    attempt: int
    seq: int
    request: RunQueued | None = None  # the failed run's trigger: a recovery re-runs it


@dataclass
class Outcomes:
    """How recoveries of one error class by one option ended."""

    tried: int = 0
    completed: int = 0


@dataclass
class LineageProjection:
    """Completed stages per adw_id, last failures, recovery outcomes, durations."""

    active: dict[RunKey, RunQueued] = field(default_factory=dict)  # accepted, not ended
    ended: dict[RunKey, RunQueued] = field(default_factory=dict)  # failed, not yet reported
    completed: dict[str, set[str]] = field(default_factory=dict)  # adw_id -> stages done
    known: set[str] = field(default_factory=set)  # adw_ids with any run
    failures: dict[str, Failure] = field(default_factory=dict)  # error_id -> failure
    last_failure: dict[RunKey, str] = field(default_factory=dict)  # run -> its error_id
    pending: dict[RunKey, tuple[str, str]] = field(default_factory=dict)  # run -> class, option
    outcomes: dict[tuple[str, str], Outcomes] = field(default_factory=dict)
    durations: dict[str, deque[float]] = field(default_factory=dict)  # type -> recent completed
    seq: int = 0
    dirty: set[str] = field(default_factory=set, compare=False, repr=False)  # adw_ids

    def __post_init__(self) -> None:
        self._handlers = self.handlers()

    def handlers(self) -> dict[type, Callable[[StoredEvent, Any], None]]:
        """The events this projection folds, and how."""
        return {
            RunQueued: self._queued,
            RunCompleted: self._completed,
            RunFailed: self._failed,
            ErrorReported: self._error,
        }

    def apply(self, stored: StoredEvent) -> None:
        """Fold one committed event."""
        self.seq = stored.seq
        handler = self._handlers.get(type(stored.event))
        if handler is not None:
            handler(stored, stored.event)

    # -- folds -------------------------------------------------------------

    def _queued(self, stored: StoredEvent, e: RunQueued) -> None:
        self.known.add(e.adw_id)
        key = (e.adw_id, e.workflow_type)
        self.active[key] = e
        if e.recovers_class and e.recovery:
            self.pending[key] = (e.recovers_class, e.recovery)
        else:
            self.pending.pop(key, None)
        self.dirty.add(e.adw_id)

    def _completed(self, stored: StoredEvent, e: RunCompleted) -> None:
        key = (e.adw_id, e.workflow_type)
        run = self.active.pop(key, None)
        covered = covered_stages(run) if run is not None else ()
        if covered:
            self.completed.setdefault(e.adw_id, set()).update(covered)
        self._settle(key, completed=True)
        recent = self.durations.setdefault(e.workflow_type, deque(maxlen=RECENT))
        recent.append(e.duration_s)
        self.dirty.add(e.adw_id)

    def _failed(self, stored: StoredEvent, e: RunFailed) -> None:
        key = (e.adw_id, e.workflow_type)
        run = self.active.pop(key, None)
        if run is not None and not e.cancelled:
            self.ended[key] = run  # its error_report follows
        if e.cancelled:
            self.pending.pop(key, None)  # a cancelled recovery says nothing of its odds
        else:
            self._settle(key, completed=False)
        self.dirty.add(e.adw_id)

    def _error(self, stored: StoredEvent, e: ErrorReported) -> None:
        if not e.adw_id or not e.workflow_type:
            return
        key = (e.adw_id, e.workflow_type)
        failure = Failure(
            e.error_id,
            e.adw_id,
            e.workflow_type,
            e.error_class,
            e.stage,
            e.attempt,
            stored.seq,
            self.ended.pop(key, None) or self.active.get(key),
        )
        self.failures[e.error_id] = failure
        self.last_failure[(e.adw_id, e.workflow_type)] = e.error_id
        while len(self.failures) > MAX_FAILURES:
            oldest = self.failures.pop(next(iter(self.failures)))
            key = (oldest.adw_id, oldest.workflow_type)
            if self.last_failure.get(key) == oldest.error_id:
                del self.last_failure[key]
        self.dirty.add(e.adw_id)

    def _settle(self, key: RunKey, *, completed: bool) -> None:
        recovering = self.pending.pop(key, None)
        if recovering is None:
            return
        tally = self.outcomes.setdefault(recovering, Outcomes())
        tally.tried += 1
        tally.completed += int(completed)

    # -- reads -------------------------------------------------------------

    def has_completed(self, adw_id: str, stage: str) -> bool:
        """Whether a completed run of ``adw_id`` covered ``stage``."""
        return stage in self.completed.get(adw_id, ())

    def failure(self, *, error_id: str | None, adw_id: str | None) -> Failure | None:
        """The failure a recovery names: by its error_id, or the latest of an adw_id."""
        if error_id:
            return self.failures.get(error_id)
        if adw_id:
            latest = [self.failures[i] for k, i in self.last_failure.items() if k[0] == adw_id]
            return max(latest, key=lambda f: f.seq, default=None)
        return None


def covered_stages(run: RunQueued) -> tuple[str, ...]:
    """The stages a completion of ``run`` completes. Fixed when the run was
    accepted (the catalogue of the time, or the orchestrator's own stages), so
    a later config cannot rewrite history; older events fall back to the
    single-stage ADW types."""
    if run.covers is not None:
        return tuple(run.covers)
    own = WORKFLOW_STAGE.get(run.workflow_type)
    return (own,) if own else ()
