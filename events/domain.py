"""Domain events: the facts stored in the event log.

Each event is a frozen Struct tagged on ``type`` with a ``VERSION``. An event
once written stays decodable forever: a change of shape bumps ``VERSION`` and
registers an upcaster in :mod:`events.upcast` from the old version.
Schema evolution: new fields get defaults; a field's type never changes.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from msgspec import Struct


class DomainEvent(Struct, frozen=True, kw_only=True, tag_field="type", omit_defaults=True):
    """Base of every stored event.

    Subclasses repeat ``frozen=True``: msgspec inherits it anyway, but type
    checkers read ``dataclass_transform`` per class (msgspec issue #657).
    """

    VERSION: ClassVar[int] = 1


class ServiceStarted(DomainEvent, tag="service_started", frozen=True):
    """The service started and took over the log."""

    pid: int
    host: str
    port: int
    max_concurrent: int


class ServiceStopped(DomainEvent, tag="service_stopped", frozen=True):
    """The service stopped cleanly."""

    reason: str


class RunQueued(DomainEvent, tag="run_queued", frozen=True):
    """A trigger was accepted: the run waits for a slot."""

    adw_id: str
    workflow_type: str
    logs_path: str
    issue_number: str = ""
    model_set: str = "base"
    trigger_reason: str = ""
    issue_type: str | None = None
    issue_json: dict[str, Any] | None = None
    stages: list[str] | None = None
    config: dict[str, Any] | None = None
    connection_id: str | None = None
    request_id: str | None = None
    # A retry or a user's recovery: which attempt this is, the error it answers
    # (``retry_of``: the failure's error_id), of what class, by which option
    # (``auto_retry``, ``retry``, ``retry_heavy``, ``resume_from_stage``).
    attempt: int = 1
    retry_of: str | None = None
    recovers_class: str | None = None
    recovery: str | None = None
    not_before: float | None = None  # wall-clock time before which it does not start
    first_queued: float | None = None  # the first attempt's queueing time (schedule_to_close)
    covers: list[str] | None = None  # the board stages a completion of this run completes


class TriggerDeduplicated(DomainEvent, tag="trigger_deduplicated", frozen=True):
    """A trigger repeated a queued or running run; it started nothing new."""

    adw_id: str
    workflow_type: str
    logs_path: str
    connection_id: str | None = None
    request_id: str | None = None


class TriggerRejected(DomainEvent, tag="trigger_rejected", frozen=True):
    """A trigger was refused, with the code and reason the client was told."""

    error: str
    message: str
    adw_id: str = ""
    workflow_type: str = ""
    details: dict[str, Any] | None = None
    connection_id: str | None = None
    request_id: str | None = None


class ResourceUsage(Struct, frozen=True, kw_only=True):
    """What a run's child consumed, from ``wait4``'s rusage (0 where the OS gives nothing)."""

    cpu_user_s: float = 0.0
    cpu_system_s: float = 0.0
    max_rss_kb: int = 0
    read_bytes: int = 0
    write_bytes: int = 0


class RunStarted(DomainEvent, tag="run_started", frozen=True):
    """The run's child process was spawned, leader of process group ``pid``.

    ``proc_start`` is the child's start time in clock ticks since boot (from
    ``/proc``), so a later start can tell the child from a process that
    reused its pid. ``expected_s`` is the typical duration of this workflow
    type when it started (None with no history).
    """

    adw_id: str
    workflow_type: str
    pid: int
    argv: list[str]
    cwd: str
    proc_start: int = 0
    expected_s: float | None = None


class RunProgress(DomainEvent, tag="run_progress", frozen=True):
    """The workflow reported progress on a progress line."""

    adw_id: str
    workflow_type: str
    progress_percent: int
    current_step: str = ""
    message: str = ""


class StageChanged(DomainEvent, tag="stage_changed", frozen=True):
    """The run moved its Kanban card from one stage to another."""

    adw_id: str
    workflow_type: str
    from_stage: str
    to_stage: str
    message: str = ""


class RunLogged(DomainEvent, tag="run_logged", frozen=True):
    """A line of the run's output, as shown on boards (rate-limited per run)."""

    adw_id: str
    workflow_type: str
    level: Literal["INFO", "SUCCESS", "WARNING", "ERROR"]
    message: str


class RunCompleted(DomainEvent, tag="run_completed", frozen=True):
    """The child exited with status 0."""

    adw_id: str
    workflow_type: str
    duration_s: float
    resource_usage: ResourceUsage | None = None
    expected_s: float | None = None


class RunFailed(DomainEvent, tag="run_failed", frozen=True):
    """The run ended without success: non-zero exit, timeout, spawn error,
    cancellation or interruption. ``reason`` says which, for a person."""

    adw_id: str
    workflow_type: str
    reason: str
    exit_code: int | None = None
    duration_s: float | None = None
    cancelled: bool = False
    progress_percent: int = 0
    resource_usage: ResourceUsage | None = None
    expected_s: float | None = None


class CancelRequested(DomainEvent, tag="cancel_requested", frozen=True):
    """A client asked to cancel the runs of an adw_id; ``outcome`` says what came of it."""

    adw_id: str
    reason: str
    outcome: Literal["cancelling", "not_found"]
    connection_id: str | None = None
    request_id: str | None = None
    force: bool = False  # terminate: SIGKILL now, no grace


class ErrorReported(DomainEvent, tag="error_reported", frozen=True):
    """A classified error, with what a person can do about it."""

    error_id: str
    category: Literal["connection", "workflow", "system"]
    severity: Literal["low", "medium", "high", "critical"]
    description: str
    suggested_actions: list[str]
    recovery_options: list[str]
    adw_id: str = ""
    workflow_type: str = ""
    error_class: str = ""  # a stable id, e.g. workflow.exit_nonzero (actors/classify.py)
    attempt: int = 1
    retry_in_s: float | None = None  # an automatic retry is due after this long
    stage: str = ""  # the card's stage when the run failed (resume_from_stage starts there)


class RecoveryOffered(DomainEvent, tag="recovery_offered", frozen=True):
    """What a client was told it can do about a failure (``recovery_instructions``),
    computed from the log up to the failure: kept so replay shows the same figures."""

    error_id: str
    adw_id: str
    workflow_type: str
    error_class: str
    option: str  # the recommended option, whose figures these are
    steps: list[str]
    estimated_time: float
    success_probability: float
    based_on: int  # how many earlier recoveries of this class by this option
    options: list[dict[str, Any]] = []


class OrphanStopped(DomainEvent, tag="orphan_stopped", frozen=True):
    """A child left running by a service that died was found and stopped."""

    adw_id: str
    workflow_type: str
    pid: int
    signal: str


class ActorFailed(DomainEvent, tag="actor_failed", frozen=True):
    """An actor raised out of a handler; its supervisor applied its policy.

    Never carries the message that caused it (a frame may hold anything).
    """

    actor: str  # connection, workflow, scheduler, projector, event_log, transport
    exception: str  # the exception's type name
    connection_id: str | None = None
    adw_id: str | None = None
    action: str = ""  # what the supervisor did: "connection closed 1011", ...


# --------------------------------------------------------------------------
# The real ADW scripts and the board's agent stream (issue 14)


class AdwStateWritten(DomainEvent, tag="adw_state_written", frozen=True):
    """Before launching a run, adwd wrote the ADW state its scripts load
    (``<cwd>/agents/<adw_id>/adw_state.json``): ``created`` or updated (a
    dependent workflow of an existing adw_id); ``changed`` names the fields."""

    adw_id: str
    workflow_type: str
    path: str
    created: bool
    data_source: str
    changed: list[str] = []


class AgentActivity(DomainEvent, tag="agent_activity", frozen=True):
    """What an agent of a run did, for the board's agent panel: ``kind`` is the
    board's message type (``text_block``, ``tool_use_pre``...), ``data`` its
    ``data`` payload, already in the board's shape (actors/agentstream.py).
    ``source``: ``notifier`` (an HTTP POST of the scripts) or the file it was
    read from (``<agent>/raw_output.jsonl``)."""

    adw_id: str
    workflow_type: str
    kind: str
    data: dict[str, Any]
    source: str = ""


class AgentOffsets(DomainEvent, tag="agent_offsets", frozen=True):
    """How far the run's watcher has read each agent file (relative path ->
    ``[inode, byte offset]``), committed with the activity read up to there:
    a restart resumes after the last record recorded, never before or after."""

    adw_id: str
    workflow_type: str
    offsets: dict[str, list[int]]


class AdwDeleted(DomainEvent, tag="adw_deleted", frozen=True):
    """``DELETE /api/adws/<adw_id>``: its runs were cancelled (``runs_cancelled``
    of them were queued or running) and its work removed (``removed``: paths)."""

    adw_id: str
    runs_cancelled: int = 0
    removed: list[str] = []


ADW_EVENTS: tuple[type[DomainEvent], ...] = (
    AdwStateWritten,
    AgentActivity,
    AgentOffsets,
    AdwDeleted,
)
# -- monitoring (issue 12): alerts as facts, so ``adwd replay`` shows why one fired


class AlertFired(DomainEvent, tag="alert_fired", frozen=True):
    """A monitoring rule's condition held for its ``for_s``: the alert fires.

    ``value`` is the sampled value that fired it, ``threshold`` the rule's
    ``raise_at`` (actors/health.py documents each rule).
    """

    alert_id: str
    rule: str
    component: str
    level: Literal["warning", "error", "critical"]
    health: Literal["degraded", "unhealthy"]
    message: str
    value: float | None
    threshold: float
    actions_required: list[str] = []


class AlertResolved(DomainEvent, tag="alert_resolved", frozen=True):
    """A firing alert's condition stayed clear for its ``keep_firing_for_s``."""

    alert_id: str
    rule: str
    component: str
    message: str
    value: float | None
    threshold: float  # the rule's clear_at
    firing_s: float = 0.0  # how long it fired


# -- security audit (issue 13; docs/security.md). Recorded while security is on.
# Never a credential, a proof or a token: ids, outcomes and reasons only.


class ConnectionOpened(DomainEvent, tag="connection_opened", frozen=True):
    """A WebSocket connection was accepted (its principal if the handshake carried one)."""

    connection_id: str
    address: str
    origin: str = ""
    user_id: str = ""


class ConnectionClosed(DomainEvent, tag="connection_closed", frozen=True):
    """A connection ended, and how."""

    connection_id: str
    address: str
    code: int | None = None
    reason: str = ""


class AuthAttempted(DomainEvent, tag="auth_attempted", frozen=True):
    """An authentication attempt: on a connection or at a handshake."""

    address: str
    method: str
    outcome: Literal["success", "failure"]
    reason: str = ""  # a stable word (expired, bad_signature, ...) on failure
    user_id: str = ""
    connection_id: str = ""


class AccessDenied(DomainEvent, tag="access_denied", frozen=True):
    """A message or a connection was refused: not authenticated, not permitted,
    over a limit (``limit`` and ``retry_after``), or cut for abuse."""

    address: str
    outcome: Literal["unauthenticated", "forbidden", "rate_limited", "disconnected"]
    message_type: str = ""
    permission: str = ""
    limit: str = ""
    retry_after: float | None = None
    user_id: str = ""
    connection_id: str = ""


SECURITY_EVENTS: tuple[type[DomainEvent], ...] = (
    ConnectionOpened,
    ConnectionClosed,
    AuthAttempted,
    AccessDenied,
)

DOMAIN_EVENTS: tuple[type[DomainEvent], ...] = (
    ServiceStarted,
    ServiceStopped,
    RunQueued,
    TriggerDeduplicated,
    TriggerRejected,
    RunStarted,
    RunProgress,
    RunCompleted,
    RunFailed,
    CancelRequested,
    ErrorReported,
    OrphanStopped,
    StageChanged,
    RunLogged,
    ActorFailed,
    RecoveryOffered,
    *ADW_EVENTS,
    AlertFired,
    AlertResolved,
    *SECURITY_EVENTS,
)
AnyEvent = (
    ServiceStarted
    | ServiceStopped
    | RunQueued
    | TriggerDeduplicated
    | TriggerRejected
    | RunStarted
    | RunProgress
    | RunCompleted
    | RunFailed
    | CancelRequested
    | ErrorReported
    | OrphanStopped
    | StageChanged
    | RunLogged
    | ActorFailed
    | RecoveryOffered
    | AdwStateWritten  # issue 14: ADW_EVENTS
    | AgentActivity
    | AgentOffsets
    | AdwDeleted
    | AlertFired
    | AlertResolved
    | ConnectionOpened
    | ConnectionClosed
    | AuthAttempted
    | AccessDenied
)
TERMINAL_EVENTS = (RunCompleted, RunFailed)


def event_type(event: DomainEvent) -> str:
    """The stored ``type`` of an event."""
    return str(event.__struct_config__.tag)


def workflow_stream(adw_id: str) -> str:
    """The stream of a run's events."""
    return f"workflow:{adw_id}"


def connection_stream(connection_id: str) -> str:
    """The stream of a connection's commands and their answers."""
    return f"connection:{connection_id}"


SYSTEM_STREAM = "system"
