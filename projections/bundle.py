"""All projections folded together: one dispatch per event.

The same class serves the live service, the start-up catch-up, ``adwd
replay`` and the benchmark, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from adwd.events.store import StoredEvent
from adwd.projections.audit import AuditProjection
from adwd.projections.lineage import LineageProjection
from adwd.projections.metrics import MetricsProjection
from adwd.projections.queue import QueueProjection
from adwd.projections.requests import RequestsProjection
from adwd.projections.runs import RunsProjection

Handler = Callable[[StoredEvent, Any], None]


@dataclass
class Projections:
    """Runs, metrics, queue, audit and lineage, at ``seq``."""

    runs: RunsProjection = field(default_factory=RunsProjection)
    metrics: MetricsProjection = field(default_factory=MetricsProjection)
    queue: QueueProjection = field(default_factory=QueueProjection)
    audit: AuditProjection = field(default_factory=AuditProjection)
    lineage: LineageProjection = field(default_factory=LineageProjection)
    requests: RequestsProjection = field(default_factory=RequestsProjection)
    seq: int = 0

    def __post_init__(self) -> None:
        self.queue.metrics = self.metrics  # typical durations are kept once, in metrics
        table: dict[type, list[Handler]] = {}
        for part in (
            self.runs,
            self.metrics,
            self.queue,
            self.audit,
            self.lineage,
            self.requests,
        ):
            for event_type, handler in part.handlers().items():
                table.setdefault(event_type, []).append(handler)
        self._dispatch = {k: tuple(v) for k, v in table.items()}

    def apply(self, stored: StoredEvent) -> None:
        """Fold one committed event into every projection."""
        self.seq = self.runs.seq = self.lineage.seq = stored.seq
        for handler in self._dispatch.get(type(stored.event), ()):
            handler(stored, stored.event)

    def apply_all(self, events: Iterable[StoredEvent]) -> None:
        """Fold many events, in order."""
        dispatch, no_handlers = self._dispatch, ()
        stored = None
        for stored in events:
            for handler in dispatch.get(type(stored.event), no_handlers):
                handler(stored, stored.event)
        if stored is not None:
            self.seq = self.runs.seq = self.lineage.seq = stored.seq
