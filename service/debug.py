"""Debugging queries over the event log and the read models, as plain functions.

``adwd events``, ``inspect``, ``replay`` and ``audit`` are thin printers over
these functions; programs can call them directly. Every store is opened
read-only, so they are safe to use while the service runs: each query sees
the events committed when it reads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adwd.events import domain as ev
from adwd.events.errors import AdwdError
from adwd.events.store import EventStore, StoredEvent
from adwd.projections.audit import AuditEntry
from adwd.projections.bundle import Projections
from adwd.projections.queue import QueueEntry
from adwd.projections.runs import RunsProjection
from adwd.projections.views import ViewStore
from adwd.service.app import EVENTS_FILE, VIEWS_FILE

POLL_S = 0.2  # how often --follow looks for new rows committed by the service
EVENT_TYPES = tuple(sorted(str(cls.__struct_config__.tag) for cls in ev.DOMAIN_EVENTS))
AUDIT_OUTCOMES = ("accepted", "deduplicated", "rejected", "cancelling", "not_found")
_SEQ = re.compile(r"[0-9]+")


class QueryError(AdwdError):
    """A debugging query was given arguments it cannot use."""


# -- arguments -----------------------------------------------------------------


@dataclass(frozen=True)
class Bound:
    """One end of a range of events: a ``seq`` or a time (epoch seconds)."""

    seq: int | None = None
    ts: float | None = None


def parse_time(text: str) -> float:
    """Epoch seconds from ISO 8601 (naive means UTC) or epoch seconds (``@`` optional)."""
    value = text.strip().removeprefix("@")
    with contextlib.suppress(ValueError):
        seconds = float(value)
        if math.isfinite(seconds):
            return seconds
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise QueryError(
            f"{text!r} is not a time: give an ISO 8601 timestamp such as 2026-11-26T01:00:00 "
            "(UTC unless it carries an offset) or epoch seconds such as 1795656000.5"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_bound(text: str) -> Bound:
    """A plain integer is a seq; anything else is a time (see :func:`parse_time`)."""
    value = text.strip()
    if _SEQ.fullmatch(value):
        return Bound(seq=int(value))
    return Bound(ts=parse_time(value))


def adw_stream(adw_id: str | None, stream: str | None) -> str | None:
    """The stream to read: ``workflow:<adw_id>`` for an adw_id, else ``stream``."""
    if adw_id is not None and stream is not None and stream != ev.workflow_stream(adw_id):
        raise QueryError("give --adw-id or --stream, not both")
    return ev.workflow_stream(adw_id) if adw_id is not None else stream


# -- stores ----------------------------------------------------------------------


@contextlib.contextmanager
def open_events(data_dir: Path) -> Iterator[EventStore]:
    """The data directory's event log, read-only (a StoreError if there is none)."""
    store = EventStore(Path(data_dir) / EVENTS_FILE, readonly=True)
    try:
        yield store
    finally:
        store.close()


@contextlib.contextmanager
def open_views(data_dir: Path) -> Iterator[ViewStore]:
    """The data directory's read models, read-only (a StoreError if there are none)."""
    views = ViewStore(Path(data_dir) / VIEWS_FILE, readonly=True)
    try:
        yield views
    finally:
        views.close()


# -- events ----------------------------------------------------------------------


@dataclass(frozen=True)
class EventQuery:
    """Which events to show. Both ends are inclusive; a time is compared with ``ts``."""

    since: Bound | None = None
    until: Bound | None = None
    adw_id: str | None = None
    stream: str | None = None
    types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.types) - set(EVENT_TYPES))
        if unknown:
            raise QueryError(f"unknown event type {unknown[0]!r}; one of: {', '.join(EVENT_TYPES)}")
        adw_stream(self.adw_id, self.stream)

    def matches_time(self, stored: StoredEvent) -> bool:
        """Whether the event is inside the time bounds (always, without any)."""
        since = self.since.ts if self.since else None
        until = self.until.ts if self.until else None
        return (since is None or stored.ts >= since) and (until is None or stored.ts <= until)

    def _read(self, store: EventStore, after: int, until: int | None) -> Iterator[StoredEvent]:
        stream = adw_stream(self.adw_id, self.stream)
        for stored in store.read(after, until=until, stream=stream, types=self.types or None):
            if self.matches_time(stored):
                yield stored


def select_events(store: EventStore, query: EventQuery) -> Iterator[StoredEvent]:
    """The events of the log matching ``query``, oldest first."""
    after = max(0, query.since.seq - 1) if query.since and query.since.seq is not None else 0
    until = query.until.seq if query.until is not None else None
    return query._read(store, after, until)


def follow_events(
    store: EventStore,
    query: EventQuery,
    *,
    poll_s: float = POLL_S,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[StoredEvent]:
    """The matching events already in the log, then each new one as it is committed.

    Never ends: the log is polled every ``poll_s`` seconds (another process
    writes it, so there is nothing to wait on). ``query.until`` must be None.
    """
    if query.until is not None:
        raise QueryError("--follow shows events as they come; it takes no --until")
    head = store.last_seq()
    yield from select_events(store, dataclasses.replace(query, until=Bound(seq=head)))
    if query.since is not None and query.since.seq is not None:
        head = max(head, query.since.seq - 1)
    while True:
        last = store.last_seq()
        if last > head:
            yield from query._read(store, head, last)
            head = last
        else:
            sleep(poll_s)


def describe(event: ev.DomainEvent) -> str:  # noqa: PLR0912 (one case per event type)
    """One line saying what an event means, for a person."""
    match event:
        case ev.ServiceStarted():
            return f"pid {event.pid}, port {event.port}, max_concurrent {event.max_concurrent}"
        case ev.ServiceStopped():
            return event.reason
        case ev.RunQueued():
            why = f", reason {event.trigger_reason!r}" if event.trigger_reason else ""
            issue = f", issue {event.issue_number}" if event.issue_number else ""
            retry = (
                f", attempt {event.attempt} ({event.recovery} of {event.retry_of})"
                if event.retry_of
                else ""
            )
            return f"{event.workflow_type} queued{issue}{why}{retry}; log {event.logs_path}"
        case ev.TriggerDeduplicated():
            return f"{event.workflow_type}: already queued or running"
        case ev.TriggerRejected():
            return f"{event.workflow_type or '?'} rejected: {event.error}: {event.message}"
        case ev.RunStarted():
            return f"{event.workflow_type} started, pid {event.pid}"
        case ev.RunProgress():
            text = f"{event.workflow_type} {event.progress_percent}%"
            return " ".join(filter(None, (text, event.current_step, event.message)))
        case ev.RunCompleted():
            return f"{event.workflow_type} completed in {format_duration(event.duration_s)}"
        case ev.RunFailed():
            took = f" after {format_duration(event.duration_s)}" if event.duration_s else ""
            return f"{event.workflow_type} failed{took}: {event.reason}"
        case ev.CancelRequested():
            verb = "terminate" if event.force else "cancel"
            return f"{verb} {event.adw_id}: {event.outcome} ({event.reason})"
        case ev.ErrorReported():
            retry = (
                f"; attempt {event.attempt + 1} in {event.retry_in_s:g} s"
                if (event.retry_in_s is not None)
                else ""
            )
            return f"{event.severity} {event.category} error: {event.description}{retry}"
        case ev.RecoveryOffered():
            return (
                f"recovery of {event.error_id}: {event.option}, p={event.success_probability:.2f} "
                f"(from {event.based_on}), ~{format_duration(event.estimated_time)}"
            )
        case ev.OrphanStopped():
            return f"{event.workflow_type}: leftover pid {event.pid} stopped with {event.signal}"
        case ev.AlertFired():  # monitoring (issue 12): the value that fired it
            return (
                f"alert {event.alert_id} fired ({event.level}, {event.component}): "
                f"{event.message} [{event.rule} = {event.value}, threshold {event.threshold}]"
            )
        case ev.AlertResolved():
            return f"alert {event.alert_id} resolved after {format_duration(event.firing_s)}"
    return type(event).__name__


def format_ts(ts: float | None) -> str:
    """A time as UTC ISO 8601 with milliseconds (what ``--since`` accepts back)."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def format_duration(seconds: float | None) -> str:
    """``0.088s``, ``12.5s``, ``3m 07.0s``, ``2h 03m``; ``-`` for None."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.3f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m {seconds % 60:04.1f}s"
    return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60):02d}m"


# -- inspect ---------------------------------------------------------------------


@dataclass
class Step:
    """One event of a run, with the time since the run's previous event."""

    seq: int
    ts: float
    type: str
    delta_s: float | None  # None for the run's first event
    elapsed_s: float  # since the run's first event
    summary: str
    event: ev.DomainEvent


@dataclass
class RunTimeline:
    """One run of an adw_id: its events in order and how it ended."""

    adw_id: str
    workflow_type: str
    logs_path: str = ""
    status: str = "unknown"  # queued | running | completed | failed (unknown: no run_queued)
    reason: str = ""
    exit_code: int | None = None
    cancelled: bool = False
    duration_s: float | None = None
    queued_ts: float | None = None
    started_ts: float | None = None
    ended_ts: float | None = None
    steps: list[Step] = field(default_factory=list)

    @property
    def wait_s(self) -> float | None:
        """Time spent queued before the child started."""
        if self.queued_ts is None or self.started_ts is None:
            return None
        return self.started_ts - self.queued_ts

    def __post_init__(self) -> None:
        # The run's outcome comes from the service's own fold of the log
        # (RunsProjection), so `adwd inspect` and the live service cannot
        # disagree on how a run ended. Not a field: it is not printed.
        self._fold = RunsProjection()

    def add(self, stored: StoredEvent) -> None:
        """Append an event and update the outcome it implies."""
        first = self.steps[0].ts if self.steps else stored.ts
        delta = stored.ts - self.steps[-1].ts if self.steps else None
        e = stored.event
        self.steps.append(
            Step(stored.seq, stored.ts, stored.type, delta, stored.ts - first, describe(e), e)
        )
        self._fold.apply(stored)
        view = self._fold.runs.get((self.adw_id, self.workflow_type))
        if view is None:
            if isinstance(e, ev.TriggerDeduplicated) and not self.logs_path:
                self.logs_path = e.logs_path
            return
        self.logs_path, self.status = view.request.logs_path, view.status
        self.queued_ts, self.started_ts = view.queued_ts, view.started_ts
        if view.status in ("completed", "failed", "cancelled"):
            self.reason, self.exit_code, self.cancelled = (
                view.message,
                view.exit_code,
                view.cancelled,
            )
            self.duration_s, self.ended_ts = view.duration_s, view.ended_ts


def build_timelines(events: Iterable[StoredEvent]) -> list[RunTimeline]:
    """Split one adw_id's events into its runs, in the order they were queued.

    Each ``run_queued`` opens a run of its workflow type (a re-run of a type
    opens a new one); every other event goes to the latest run of its type,
    or the latest run at all when it names no type.
    """
    runs: list[RunTimeline] = []
    latest: dict[str, RunTimeline] = {}
    for stored in events:
        e = stored.event
        workflow_type = getattr(e, "workflow_type", "")
        run = latest.get(workflow_type) if workflow_type else (runs[-1] if runs else None)
        if run is None or isinstance(e, ev.RunQueued):
            run = RunTimeline(getattr(e, "adw_id", ""), workflow_type)
            runs.append(run)
            if workflow_type:
                latest[workflow_type] = run
        run.add(stored)
    return runs


def inspect_run(store: EventStore, adw_id: str) -> list[RunTimeline]:
    """Every run of ``adw_id`` (empty when the log has none)."""
    return build_timelines(store.read(stream=ev.workflow_stream(adw_id)))


# -- replay ----------------------------------------------------------------------


@dataclass
class RunState:
    """A run as the projections saw it at the replay point."""

    adw_id: str
    workflow_type: str
    status: str
    progress_percent: int
    current_step: str
    message: str
    queued_seq: int
    last_seq: int
    duration_s: float | None


@dataclass
class ReplayState:
    """The projections at one point of the log."""

    seq: int  # last event folded (0: none)
    at: float | None  # its ts: the "now" of the queue estimates
    max_concurrent: int
    runs: list[RunState]
    queue: list[QueueEntry]
    metrics: dict[str, dict[str, Any]]


def replay(store: EventStore, until: Bound) -> ReplayState:
    """Fold every event up to ``until`` (inclusive; for a time, up to the first later event)."""
    last: list[StoredEvent] = []  # the last event folded

    def prefix() -> Iterator[StoredEvent]:
        for stored in store.read(0, until=until.seq):
            if until.ts is not None and stored.ts > until.ts:
                return
            last[:] = [stored]
            yield stored

    projections = Projections()
    projections.apply_all(prefix())
    at = last[0].ts if last else None
    views = sorted(projections.runs.runs.values(), key=lambda v: v.queued_seq)
    fields = [f.name for f in dataclasses.fields(RunState)][2:]
    runs = [RunState(*v.key, *(getattr(v, name) for name in fields)) for v in views]
    return ReplayState(
        seq=projections.seq,
        at=at,
        max_concurrent=projections.queue.max_concurrent,
        runs=runs,
        queue=projections.queue.entries(at) if at is not None else [],
        metrics=projections.metrics.summary(),
    )


# -- audit -----------------------------------------------------------------------


def audit_entries(
    views: ViewStore,
    *,
    adw_id: str | None = None,
    principal: str | None = None,
    outcome: str | None = None,
    since: str | float | None = None,
    limit: int | None = None,
) -> list[AuditEntry]:
    """Audited commands, oldest first; ``since`` is a time (text or epoch seconds)."""
    if outcome is not None and outcome not in AUDIT_OUTCOMES:
        raise QueryError(f"unknown outcome {outcome!r}; one of: {', '.join(AUDIT_OUTCOMES)}")
    if limit is not None and limit < 0:
        raise QueryError("--limit must be 0 or more")
    since_ts = parse_time(since) if isinstance(since, str) else since
    found = views.audit(
        adw_id=adw_id, principal=principal, outcome=outcome, since_ts=since_ts, limit=limit
    )
    return list(found)
