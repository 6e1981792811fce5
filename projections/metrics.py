"""Workflow metrics: per run figures and per workflow type aggregates.

``performance_score`` (0..100) compares a run with what was typical for its
type when it started: a completed run scores ``100 * min(1, expected /
actual)`` where ``expected`` is the median duration of the last
``RECENT`` completed runs of that type (100 with no history); a failed run
scores 0. It is computed from the run's own events (``expected_s`` is
recorded in them), so live and replayed figures agree.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from adwd.events.domain import RunCompleted, RunFailed
from adwd.events.store import StoredEvent

RECENT = 20  # completed runs per type that make "typical"
WINDOW = 1000  # completed runs per type the duration percentiles are taken over


def expected_duration(recent: Iterable[float]) -> float | None:
    """The typical duration of a type: the median of its recent completed runs."""
    values = list(recent)
    return round(statistics.median(values), 6) if values else None


def performance_score(event: RunCompleted | RunFailed) -> float:
    """0..100: how the run compares with the typical run of its type."""
    if isinstance(event, RunFailed):
        return 0.0
    if not event.expected_s:
        return 100.0
    return round(100.0 * min(1.0, event.expected_s / max(event.duration_s, 1e-6)), 1)


def resource_dict(event: RunCompleted | RunFailed) -> dict[str, Any]:
    """The run's resource usage as the wire's ``resource_usage`` object."""
    return msgspec.structs.asdict(event.resource_usage) if event.resource_usage else {}


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of an ordered list."""
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class TypeMetrics:
    """Aggregates of one workflow type."""

    completed: int = 0
    failed: int = 0
    durations: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT))

    @property
    def total(self) -> int:
        """Runs of this type that ended."""
        return self.completed + self.failed

    def summary(self) -> dict[str, Any]:
        """Counts, success rate and duration percentiles."""
        ordered = sorted(self.durations)
        return {
            "runs": self.total,
            "completed": self.completed,
            "failed": self.failed,
            "success_rate": round(self.completed / self.total, 4) if self.total else None,
            "duration_p50": percentile(ordered, 50) if ordered else None,
            "duration_p90": percentile(ordered, 90) if ordered else None,
            "duration_p99": percentile(ordered, 99) if ordered else None,
            "durations_over": len(ordered),
            "expected_s": expected_duration(self.recent),
        }


@dataclass
class MetricsProjection:
    """Per type aggregates, folded from terminal events."""

    types: dict[str, TypeMetrics] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set, compare=False, repr=False)  # unsaved types

    def handlers(self) -> dict[type, Callable[[StoredEvent, Any], None]]:
        """The events this projection folds, and how."""
        return {RunCompleted: self._completed, RunFailed: self._failed}

    def _type(self, workflow_type: str) -> TypeMetrics:
        self.dirty.add(workflow_type)
        metrics = self.types.get(workflow_type)
        if metrics is None:
            metrics = self.types[workflow_type] = TypeMetrics()
        return metrics

    def _completed(self, _stored: StoredEvent, e: RunCompleted) -> None:
        metrics = self._type(e.workflow_type)
        metrics.completed += 1
        metrics.durations.append(e.duration_s)
        metrics.recent.append(e.duration_s)

    def _failed(self, _stored: StoredEvent, e: RunFailed) -> None:
        self._type(e.workflow_type).failed += 1

    def expected(self, workflow_type: str) -> float | None:
        """The typical duration of a type, or None with no history."""
        metrics = self.types.get(workflow_type)
        return expected_duration(metrics.recent) if metrics else None

    def expected_overall(self) -> float | None:
        """The typical duration over every type's recent runs, or None with no history."""
        return expected_duration(d for m in self.types.values() for d in m.recent)

    def summary(self) -> dict[str, dict[str, Any]]:
        """Every type's aggregates."""
        return {name: m.summary() for name, m in sorted(self.types.items())}
