"""Queue status: who waits, in which position, and for about how long.

The estimate simulates the scheduler: ``max_concurrent`` slots, each busy
until its running run is expected to end; waiting runs take the earliest
free slot in FIFO order. A run's expected duration is the median of its
type's last completed runs; with no history for the type, the median over
all types' recent runs; with no history at all, ``DEFAULT_EXPECTED_S``.
Runs already past their expected duration are taken to end now. Per-type
limits and the one-run-per-adw_id rule are not simulated, so the estimate
is a lower bound when they bite.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from adwd.events.domain import (
    RunCompleted,
    RunFailed,
    RunQueued,
    RunStarted,
    ServiceStarted,
)
from adwd.events.store import StoredEvent
from adwd.projections.metrics import MetricsProjection

DEFAULT_EXPECTED_S = 60.0
RunKey = tuple[str, str]


@dataclass(frozen=True)
class QueueEntry:
    """One waiting run's place in the queue."""

    adw_id: str
    workflow_type: str
    connection_id: str | None
    position: int  # 1 = next to start
    queue_length: int
    estimated_wait_s: float


@dataclass
class QueueProjection:
    """Waiting and running runs, and recent durations for estimates."""

    waiting: dict[RunKey, str | None] = field(default_factory=dict)  # FIFO: key -> connection
    running: dict[RunKey, float] = field(default_factory=dict)  # key -> started ts
    max_concurrent: int = 1
    # Where typical durations come from: the metrics fold, the one place that
    # keeps them (set by the Projections bundle).
    metrics: MetricsProjection = field(default_factory=MetricsProjection, compare=False, repr=False)

    def handlers(self) -> dict[type, Callable[[StoredEvent, Any], None]]:
        """The events this projection folds, and how."""
        return {
            ServiceStarted: self._service_started,
            RunQueued: self._queued,
            RunStarted: self._started,
            RunCompleted: self._ended,
            RunFailed: self._ended,
        }

    def _service_started(self, _stored: StoredEvent, e: ServiceStarted) -> None:
        self.max_concurrent = max(1, e.max_concurrent)

    def _queued(self, _stored: StoredEvent, e: RunQueued) -> None:
        self.waiting[(e.adw_id, e.workflow_type)] = e.connection_id

    def _started(self, stored: StoredEvent, e: RunStarted) -> None:
        key = (e.adw_id, e.workflow_type)
        self.waiting.pop(key, None)
        self.running[key] = stored.ts

    def _ended(self, _stored: StoredEvent, e: RunCompleted | RunFailed) -> None:
        key = (e.adw_id, e.workflow_type)
        self.waiting.pop(key, None)
        self.running.pop(key, None)

    def expected(self, workflow_type: str) -> float:
        """Expected duration of a run of this type, with the documented fallbacks."""
        typical = self.metrics.expected(workflow_type)
        if typical is not None:
            return typical
        overall = self.metrics.expected_overall()
        return overall if overall is not None else DEFAULT_EXPECTED_S

    def entries(self, now: float) -> list[QueueEntry]:
        """Every waiting run with its position and estimated wait at time ``now``."""
        waits = self.waits(now)
        length = len(self.waiting)
        return [
            QueueEntry(key[0], key[1], connection_id, position, length, waits[position - 1])
            for position, (key, connection_id) in enumerate(self.waiting.items(), start=1)
        ]

    def waits(self, now: float) -> list[float]:
        """Each waiting run's estimated wait at ``now``, in queue order."""
        return self._schedule(now)[0]

    def wait_for_new(self, now: float) -> float:
        """Estimated wait of a run triggered now, behind everything queued."""
        return round(self._schedule(now)[1][0], 3)

    def _schedule(self, now: float) -> tuple[list[float], list[float]]:
        medians: dict[str, float] = {}  # one median per type, not one per waiting run

        def expected(workflow_type: str) -> float:
            found = medians.get(workflow_type)
            if found is None:
                found = medians[workflow_type] = self.expected(workflow_type)
            return found

        free_at = [
            max(0.0, started + expected(key[1]) - now) for key, started in self.running.items()
        ]
        free_at = sorted(free_at)[: self.max_concurrent]
        free_at += [0.0] * (self.max_concurrent - len(free_at))
        heapq.heapify(free_at)
        waits = []
        for workflow_type in (key[1] for key in self.waiting):
            start = heapq.heappop(free_at)
            heapq.heappush(free_at, start + expected(workflow_type))
            waits.append(round(start, 3))
        return waits, free_at
