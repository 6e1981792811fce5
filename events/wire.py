"""Wire messages: every message of the protocol, both directions.

Each message is a frozen msgspec Struct in a tagged union on ``type``, shaped
as the envelope ``{"type": ..., "data": {...}}`` of
``shared/spec/websocket-message-flow.md``. ``pong`` keeps its top-level
``timestamp``. Messages derived from a stored event carry that event's
``seq`` at the top level, so a client can say where it stopped.

Schema evolution: new fields get defaults; a field's type never changes.
Unknown fields sent by clients are ignored (existing Kanban boards send more
than the spec lists). What a program must branch on has its own typed field
(an enum, a Literal or a bool), never the text of a ``message`` or
``current_step``, which is for people and may change.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from adwd.events.errors import ErrorCode

# A client-supplied adw_id becomes a directory name: keep it path-safe.
ADW_ID_PATTERN = r"^[A-Za-z0-9_-]{0,64}$"
WORKFLOW_TYPE_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"

AdwId = Annotated[
    str,
    Meta(
        pattern=ADW_ID_PATTERN,
        description="Letters, digits, '-' and '_', up to 64 characters; "
        "empty or absent: the service generates 8 lowercase hex characters.",
    ),
]
WorkflowType = Annotated[
    str,
    Meta(
        pattern=WORKFLOW_TYPE_PATTERN,
        description="A workflow type of the service's catalogue.",
        examples=["adw_plan_iso", "adw_build_iso", "adw_test_iso"],
    ),
]
Percent = Annotated[int, Meta(ge=0, le=100)]
ModelSet = Literal["base", "heavy"]
LogLevel = Literal["INFO", "SUCCESS", "WARNING", "ERROR"]
RunStatus = Literal["started", "running", "completed", "failed"]
Timestamp = Annotated[str, Meta(description="ISO 8601 UTC time")]


class _Data(Struct, frozen=True, kw_only=True):
    """Base of every ``data`` payload.

    Subclasses here and of ``_Message`` repeat ``frozen=True``: msgspec inherits
    it anyway, but type checkers read ``dataclass_transform`` per class
    (msgspec issue #657).
    """


RequestId = Annotated[str, Meta(min_length=1, max_length=64)]


class _Message(Struct, frozen=True, kw_only=True, tag_field="type", omit_defaults=True):
    """Base of every envelope: tagged on ``type``.

    ``request_id`` is the client's name for a command: replies to it carry the
    same ``request_id``, and a command re-sent with a ``request_id`` the
    service has seen is answered again, never executed twice.
    """

    request_id: RequestId | None = None


# --------------------------------------------------------------------------
# Client -> server


class TriggerWorkflowData(_Data, frozen=True):
    """What to run. Extra fields of existing Kanban clients are accepted."""

    workflow_type: WorkflowType
    adw_id: AdwId | None = None
    issue_number: (
        Annotated[str, Meta(max_length=64)] | Annotated[int, Meta(ge=0, le=2**53)] | None
    ) = None
    model_set: ModelSet = "base"
    trigger_reason: Annotated[str, Meta(max_length=500)] | None = None
    issue_type: Annotated[str, Meta(max_length=64)] | None = None
    issue_json: dict[str, Any] | None = None
    stages: list[Annotated[str, Meta(max_length=64)]] | None = None
    config: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        # Clients send issue numbers as integers or strings; the run sees a string.
        if isinstance(self.issue_number, int):
            msgspec.structs.force_setattr(self, "issue_number", str(self.issue_number))


class CancelWorkflowData(_Data, frozen=True):
    """Which run to cancel, and why."""

    adw_id: AdwId
    reason: Annotated[str, Meta(max_length=500)] = ""


class SubscribeData(_Data, frozen=True):
    """Where to resume: the last seq the client saw, in which log, for which runs."""

    since: Annotated[int, Meta(ge=0)] | None = None
    epoch: Annotated[str, Meta(max_length=64)] | None = None
    adw_ids: list[AdwId] | None = None


class Ping(_Message, tag="ping", frozen=True):
    """Heartbeat; answered by ``pong``. ``data`` is optional and ignored."""

    data: dict[str, Any] | None = None


class TriggerWorkflow(_Message, tag="trigger_workflow", frozen=True):
    """Start (or queue) a workflow run."""

    data: TriggerWorkflowData


class CancelWorkflow(_Message, tag="cancel_workflow", frozen=True):
    """Cancel a queued or running workflow run."""

    data: CancelWorkflowData


class Subscribe(_Message, tag="subscribe", frozen=True):
    """Follow runs (all, or ``adw_ids``) and resume after seq ``since``; answered by
    ``subscribed``, then every later event-derived message, then live ones."""

    data: SubscribeData = SubscribeData()


class GetQueueStatus(_Message, tag="get_queue_status", frozen=True):
    """Ask for ``queue_status`` of this connection's waiting runs now."""

    data: dict[str, Any] | None = None


# -- authentication (issue 13; docs/security.md) -----------------------------

AuthMethod = Literal["token", "oauth", "api_key"]
Credential = Annotated[str, Meta(min_length=1, max_length=8192)]


class AuthenticateData(_Data, frozen=True):
    """A credential: ``token`` (token, oauth) or ``key_id`` and ``signature``
    (api_key: hex HMAC-SHA256 of ``<challenge>:<connection_id>``)."""

    method: AuthMethod
    token: Credential | None = None
    key_id: Annotated[str, Meta(max_length=64)] | None = None
    signature: Annotated[str, Meta(max_length=128)] | None = None


class Authenticate(_Message, tag="authenticate", frozen=True):
    """Prove who the client is; answered by ``auth_response`` or ``error``."""

    data: AuthenticateData


class ClientAuthChallengeData(_Data, frozen=True):
    """The spec's client-sent form: ``challenge`` holds the credential (a token,
    or ``<key_id>:<signature>`` for api_key)."""

    method: AuthMethod
    challenge: Credential


class ClientAuthChallenge(_Message, tag="auth_challenge", frozen=True):
    """The spec's flow diagram form of ``authenticate``."""

    data: ClientAuthChallengeData


ClientMessage = (
    Ping
    | TriggerWorkflow
    | CancelWorkflow
    | Subscribe
    | GetQueueStatus
    | Authenticate
    | ClientAuthChallenge
)
CLIENT_TYPES: frozenset[str] = frozenset(
    str(m.__struct_config__.tag)  # a str tag (msgspec's type allows int tags too)
    for m in (
        Ping,
        TriggerWorkflow,
        CancelWorkflow,
        Subscribe,
        GetQueueStatus,
        Authenticate,
        ClientAuthChallenge,
    )
)

# --------------------------------------------------------------------------
# Server -> client


TriggerOutcome = Literal["queued", "deduplicated", "rejected"]


class TriggerResponseData(_Data, frozen=True):
    """The one answer to a ``trigger_workflow``.

    ``outcome`` is what the trigger did, for programs to branch on: ``queued``
    (a new run: all its messages come after this response's ``seq``),
    ``deduplicated`` (a run already queued or running, or a ``request_id``
    answered before: nothing new started) or ``rejected``. It is None only
    from a server older than the field. ``message`` is the same for people.
    """

    status: Literal["accepted", "rejected"]
    adw_id: str
    workflow_name: str
    logs_path: str
    error: ErrorCode | None = None
    message: str | None = None
    details: dict[str, Any] | None = None
    outcome: TriggerOutcome | None = None


class StatusUpdateData(_Data, frozen=True):
    """A run's status: started, running (with progress), completed or failed.

    ``cancelled`` is true on the final ``failed`` update of a run that was
    cancelled (its ``current_step`` then reads ``Cancelled``, for people).
    """

    adw_id: str
    status: RunStatus
    message: str
    progress_percent: Percent
    current_step: str
    workflow_name: str = ""
    cancelled: bool = False


class ErrorData(_Data, frozen=True):
    """What was wrong with a message and what to do about it.

    ``code`` is the stable part to branch on; typed as the enum so the JSON
    Schema lists every code. A StrEnum is encoded as its value, so the frames
    are the strings existing clients already read.
    """

    message: str
    code: ErrorCode | None = None
    details: dict[str, Any] | None = None


class ConnectionQualityData(_Data, frozen=True):
    """Measured quality of this connection."""

    latency: float
    bandwidth: float
    reliability_score: float
    last_measurement: Timestamp


class HealthStatusData(_Data, frozen=True):
    """The service's health."""

    status: Literal["healthy", "degraded", "unhealthy"]
    load: float
    memory_usage: float
    active_connections: int
    uptime: float


class QueueStatusData(_Data, frozen=True):
    """Where a client's waiting run stands in the queue."""

    queue_length: int
    estimated_wait_time: float
    position: int
    adw_id: str | None = None


class WorkflowMetricsData(_Data, frozen=True):
    """Measured figures of one run: at its start (``phase`` start, with the
    expected duration) and at its end (``phase`` final, with what it used)."""

    adw_id: str
    execution_time: float
    resource_usage: dict[str, Any]
    performance_score: float
    workflow_name: str = ""
    phase: Literal["start", "final"] = "final"
    status: str = ""
    expected_execution_time: float | None = None


class CancelResponseData(_Data, frozen=True):
    """What came of a ``cancel_workflow``."""

    adw_id: str
    status: Literal["cancelling", "not_found"]
    message: str


class StageTransitionData(_Data, frozen=True):
    """A card moved between Kanban stages."""

    adw_id: str
    workflow_name: str
    from_stage: str
    to_stage: str
    message: str
    timestamp: Timestamp


class WorkflowLogData(_Data, frozen=True):
    """A line of a run's output."""

    adw_id: str
    workflow_name: str
    message: str
    level: LogLevel
    timestamp: Timestamp


class SubscribedData(_Data, frozen=True):
    """How a subscription resumes."""

    epoch: str
    recovered: bool
    resume_from: int
    last_seq: int
    message: str


class ErrorReportData(_Data, frozen=True):
    """A classified error with what can be done about it."""

    error_id: str
    category: Literal["connection", "workflow", "system"]
    severity: Literal["low", "medium", "high", "critical"]
    description: str
    suggested_actions: list[str]
    recovery_options: list[str]
    timestamp: Timestamp
    adw_id: str | None = None
    error_class: str | None = None  # stable id of the failure's class (docs/workflows.md)


class RecoveryInstructionsData(_Data, frozen=True):
    """Steps to recover from a reported error."""

    error_id: str
    steps: list[str]
    estimated_time: float
    success_probability: float


class AuthChallengeData(_Data, frozen=True):
    """A challenge the client must answer to authenticate."""

    challenge: str
    method: AuthMethod  # the first accepted method (the spec's single field)
    expires_in: float
    methods: list[AuthMethod] = []  # every accepted method
    connection_id: str = ""  # signed with the challenge by api_key clients
    reason: Literal["connect", "retry", "expiring"] = "connect"


class AuthResponseData(_Data, frozen=True):
    """The outcome of authentication: who the client is and may do."""

    token: str
    user_id: str
    permissions: list[str]
    expires_at: Timestamp


class PerformanceMetricsData(_Data, frozen=True):
    """Periodic resource figures of the service."""

    cpu_usage: float
    memory_usage: float
    network_io: dict[str, Any]
    disk_io: dict[str, Any]
    timestamp: Timestamp


class AlertData(_Data, frozen=True):
    """Something an operator should know or act on."""

    alert_id: str
    level: Literal["info", "warning", "error", "critical"]
    message: str
    component: str
    timestamp: Timestamp
    actions_required: list[str]


class Subscribed(_Message, tag="subscribed", frozen=True):
    """Answer to ``subscribe``: ``recovered`` false means the current state follows
    instead of the missed events (other epoch, or a seq the log does not hold)."""

    data: SubscribedData


class CancelResponse(_Message, tag="cancel_response", frozen=True):
    """Answer to ``cancel_workflow``; the run's own ``status_update`` follows."""

    data: CancelResponseData
    seq: int | None = None


class StageTransition(_Message, tag="stage_transition", frozen=True):
    """A run moved its card (Kanban boards move the card on this)."""

    data: StageTransitionData
    seq: int | None = None


class WorkflowLog(_Message, tag="workflow_log", frozen=True):
    """A line of a run's output (at most ``log_lines_per_s`` per run)."""

    data: WorkflowLogData
    seq: int | None = None


class Pong(_Message, tag="pong", frozen=True):
    """Answer to ``ping``; ``timestamp`` is the server's clock in epoch ms."""

    timestamp: int


class TriggerResponse(_Message, tag="trigger_response", frozen=True):
    """Answer to ``trigger_workflow``; ``seq`` of the event that decided it."""

    data: TriggerResponseData
    seq: int | None = None


class StatusUpdate(_Message, tag="status_update", frozen=True):
    """A run's status changed; ``seq`` of its event."""

    data: StatusUpdateData
    seq: int | None = None


class Error(_Message, tag="error", frozen=True):
    """A message could not be handled; the connection stays open."""

    data: ErrorData


class ConnectionQuality(_Message, tag="connection_quality", frozen=True):
    """Connection quality report."""

    data: ConnectionQualityData


class HealthStatus(_Message, tag="health_status", frozen=True):
    """Server health, sent periodically."""

    data: HealthStatusData
    seq: int | None = None


class QueueStatus(_Message, tag="queue_status", frozen=True):
    """Queue position of a waiting run."""

    data: QueueStatusData
    seq: int | None = None


class WorkflowMetrics(_Message, tag="workflow_metrics", frozen=True):
    """Figures of a run, at its start and its end."""

    data: WorkflowMetricsData
    seq: int | None = None


class ErrorReport(_Message, tag="error_report", frozen=True):
    """A detailed, classified error report."""

    data: ErrorReportData
    seq: int | None = None


class RecoveryInstructions(_Message, tag="recovery_instructions", frozen=True):
    """How to recover from a reported error."""

    data: RecoveryInstructionsData
    seq: int | None = None


class AuthChallenge(_Message, tag="auth_challenge", frozen=True):
    """Authentication challenge."""

    data: AuthChallengeData


class AuthResponse(_Message, tag="auth_response", frozen=True):
    """Authentication result."""

    data: AuthResponseData


class PerformanceMetrics(_Message, tag="performance_metrics", frozen=True):
    """Periodic performance figures."""

    data: PerformanceMetricsData
    seq: int | None = None


class Alert(_Message, tag="alert", frozen=True):
    """An alert notification."""

    data: AlertData
    seq: int | None = None


ServerMessage = (
    Pong
    | Subscribed
    | CancelResponse
    | StageTransition
    | WorkflowLog
    | TriggerResponse
    | StatusUpdate
    | Error
    | ConnectionQuality
    | HealthStatus
    | QueueStatus
    | WorkflowMetrics
    | ErrorReport
    | RecoveryInstructions
    | AuthChallenge
    | AuthResponse
    | PerformanceMetrics
    | Alert
)
