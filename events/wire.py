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

from typing import Annotated, Any, Literal, get_args

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


RecoveryOption = Literal["retry", "retry_heavy", "resume_from_stage", "cancel"]


class RecoverData(_Data, frozen=True):
    """Which failure to recover from (its ``error_id``, or the latest of an
    ``adw_id``), and how (docs/workflows.md, "Recovery")."""

    option: RecoveryOption
    error_id: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    adw_id: AdwId | None = None
    reason: Annotated[str, Meta(max_length=500)] = ""


class CardMovedData(_Data, frozen=True):
    """A card moved on the board: a drag-and-drop trigger (``stage_triggers``)."""

    card_id: Annotated[str, Meta(min_length=1, max_length=128)]
    to_stage: Annotated[str, Meta(max_length=64)]
    from_stage: Annotated[str, Meta(max_length=64)] | None = None
    adw_id: AdwId | None = None
    issue_number: (
        Annotated[str, Meta(max_length=64)] | Annotated[int, Meta(ge=0, le=2**53)] | None
    ) = None
    model_set: ModelSet = "base"
    issue_type: Annotated[str, Meta(max_length=64)] | None = None
    issue_json: dict[str, Any] | None = None


class SubscribeData(_Data, frozen=True):
    """Where to resume: the last seq the client saw, in which log, for which runs."""

    since: Annotated[int, Meta(ge=0)] | None = None
    epoch: Annotated[str, Meta(max_length=64)] | None = None
    adw_ids: list[AdwId] | None = None
    # Monitoring (issue 12): how often to get health_status, performance_metrics and
    # connection_quality, in seconds; 0 turns one off; absent keeps the connection's current choice.
    health_interval_s: Annotated[float, Meta(ge=0, le=86400)] | None = None
    performance_interval_s: Annotated[float, Meta(ge=0, le=86400)] | None = None
    quality_interval_s: Annotated[float, Meta(ge=0, le=86400)] | None = None


class Ping(_Message, tag="ping", frozen=True):
    """Heartbeat; answered by ``pong``. ``data`` is optional and ignored."""

    data: dict[str, Any] | None = None


class TriggerWorkflow(_Message, tag="trigger_workflow", frozen=True):
    """Start (or queue) a workflow run."""

    data: TriggerWorkflowData


class CancelWorkflow(_Message, tag="cancel_workflow", frozen=True):
    """Cancel a queued or running workflow run."""

    data: CancelWorkflowData


class TerminateWorkflow(_Message, tag="terminate_workflow", frozen=True):
    """Stop the runs of an adw_id now (SIGKILL to their groups, no grace)."""

    data: CancelWorkflowData


class Recover(_Message, tag="recover", frozen=True):
    """Act on a failure: retry it, retry with the heavy models, resume a
    multi-stage workflow from the stage it failed in, or cancel."""

    data: RecoverData


class CardMoved(_Message, tag="card_moved", frozen=True):
    """The board moved a card: trigger the workflow configured for its new stage."""

    data: CardMovedData


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
    suggestions: list[str] = []  # added (issue 12): what would improve this connection


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
    workflow_name: str | None = None
    attempt: int | None = None  # which attempt failed (1: the first run)
    retry_in_s: float | None = None  # an automatic retry starts after this long


class RecoveryInstructionsData(_Data, frozen=True):
    """Steps to recover from a reported error."""

    error_id: str
    steps: list[str]
    estimated_time: float
    success_probability: float
    adw_id: str | None = None
    option: str | None = None  # the recommended option, whose figures these are
    based_on: int | None = None  # earlier recoveries of this class by this option
    options: list[dict[str, Any]] | None = None  # every option: its odds and estimate


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
    # Added (issue 12): "resolved" repeats the alert_id of the alert that ended.
    state: Literal["firing", "resolved"] = "firing"


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


# --------------------------------------------------------------------------
# The Kanban board's agent stream and session messages (issue 14)
#
# Shapes of the original trigger server (adws/adw_modules/websocket_manager.py
# and adw_triggers/trigger_websocket.py of AgenticKanban). Where the board
# reads a field under another name than that server sent, both are sent:
# ``timestamp`` in ``data`` and on the envelope, ``change_type`` beside
# ``operation``, ``input``/``output``/``success`` beside
# ``tool_input``/``tool_output``/``status``. ``truncated`` is true when adwd
# cut a content field to its maximum record size (the cut is noted in it).

JsonObject = dict[str, Any]


class AgentLogData(_Data, frozen=True):
    """A line about the agent: a system record of its stream, a notifier's log entry,
    or adwd's own note (a coalesced burst, a record cut)."""

    adw_id: str
    message: str
    level: str
    timestamp: Timestamp
    source: str = ""
    agent_role: str | None = None
    session_id: str | None = None
    details: str | None = None
    context: JsonObject | None = None


class AgentUpdatedData(_Data, frozen=True):
    """The agent's state changed (the notifier's ``state_change``)."""

    adw_id: str
    timestamp: Timestamp
    status: str | None = None
    workflow_name: str | None = None
    current_step: str | None = None
    message: str | None = None
    state_snapshot: JsonObject | None = None
    state: JsonObject | None = None
    changed_fields: list[str] | None = None


class ThinkingBlockData(_Data, frozen=True):
    """The agent's reasoning (a ``thinking`` block of its stream)."""

    adw_id: str
    content: str
    timestamp: Timestamp
    reasoning_type: str | None = None
    duration_ms: int | None = None
    sequence: int | None = None
    truncated: bool = False


class TextBlockData(_Data, frozen=True):
    """Text the agent wrote (a ``text`` block of an assistant record)."""

    adw_id: str
    content: str
    timestamp: Timestamp
    sequence: int | None = None
    truncated: bool = False


class ToolUsePreData(_Data, frozen=True):
    """The agent calls a tool (a ``tool_use`` block); ``input`` repeats ``tool_input``."""

    adw_id: str
    tool_name: str
    timestamp: Timestamp
    tool_input: JsonObject | None = None
    input: JsonObject | None = None
    tool_use_id: str | None = None
    truncated: bool = False


class ToolUsePostData(_Data, frozen=True):
    """A tool's result (a ``tool_result`` block of a user record); ``output`` repeats
    ``tool_output``, ``success`` says what ``status`` says."""

    adw_id: str
    tool_name: str
    timestamp: Timestamp
    tool_output: str | None = None
    output: str | None = None
    status: str = "success"
    success: bool = True
    error: str | None = None
    tool_use_id: str | None = None
    duration_ms: int | None = None
    truncated: bool = False


class FileChangedData(_Data, frozen=True):
    """The agent touched a file (the notifier's ``file_operation``); ``change_type``
    repeats ``operation``."""

    adw_id: str
    file_path: str
    operation: str
    change_type: str
    timestamp: Timestamp
    diff: str | None = None
    summary: str | None = None
    lines_added: int = 0
    lines_removed: int = 0
    truncated: bool = False


class WorkflowPhaseTransitionData(_Data, frozen=True):
    """The workflow moved from one phase to another."""

    adw_id: str
    phase_to: str
    timestamp: Timestamp
    phase_from: str | None = None
    workflow_name: str | None = None
    metadata: JsonObject | None = None


class AgentOutputChunkData(_Data, frozen=True):
    """A chunk of an agent's raw output, as the notifier posted it."""

    adw_id: str
    agent_role: str
    content: str
    timestamp: Timestamp
    line_number: int | None = None
    total_lines: int | None = None
    is_complete: bool = False
    truncated: bool = False


class ScreenshotAvailableData(_Data, frozen=True):
    """A screenshot (a review's) is available at ``screenshot_path``."""

    adw_id: str
    screenshot_path: str
    screenshot_type: str
    timestamp: Timestamp
    metadata: JsonObject | None = None


class SpecCreatedData(_Data, frozen=True):
    """A spec file (plan, patch, review) was written at ``spec_path``."""

    adw_id: str
    spec_path: str
    spec_type: str
    timestamp: Timestamp
    metadata: JsonObject | None = None


class SessionRegisteredData(_Data, frozen=True):
    """A board session registered: its tabs are counted as one (``connections``)."""

    session_id: str
    message: str
    connections: int = 1


class TicketNotificationResponseData(_Data, frozen=True):
    """What came of a ``ticket_notification`` (``status`` ``received`` or ``error``)."""

    status: Literal["received", "error"]
    ticket_id: str
    message: str
    timestamp: Timestamp
    error: str | None = None
    cleaned_up: str | None = None  # the old adw_id whose runs and work were removed


class AgentLog(_Message, tag="agent_log", frozen=True):
    """A line about an agent, for the board's agent log panel."""

    data: AgentLogData
    timestamp: Timestamp = ""
    seq: int | None = None


class AgentUpdated(_Message, tag="agent_updated", frozen=True):
    """An agent's state changed."""

    data: AgentUpdatedData
    timestamp: Timestamp = ""
    seq: int | None = None


class ThinkingBlock(_Message, tag="thinking_block", frozen=True):
    """An agent's thinking block."""

    data: ThinkingBlockData
    timestamp: Timestamp = ""
    seq: int | None = None


class TextBlock(_Message, tag="text_block", frozen=True):
    """An agent's text block."""

    data: TextBlockData
    timestamp: Timestamp = ""
    seq: int | None = None


class ToolUsePre(_Message, tag="tool_use_pre", frozen=True):
    """An agent is about to use a tool."""

    data: ToolUsePreData
    timestamp: Timestamp = ""
    seq: int | None = None


class ToolUsePost(_Message, tag="tool_use_post", frozen=True):
    """A tool an agent used returned."""

    data: ToolUsePostData
    timestamp: Timestamp = ""
    seq: int | None = None


class FileChanged(_Message, tag="file_changed", frozen=True):
    """An agent changed a file."""

    data: FileChangedData
    timestamp: Timestamp = ""
    seq: int | None = None


class WorkflowPhaseTransition(_Message, tag="workflow_phase_transition", frozen=True):
    """A workflow moved between phases."""

    data: WorkflowPhaseTransitionData
    timestamp: Timestamp = ""
    seq: int | None = None


class AgentOutputChunk(_Message, tag="agent_output_chunk", frozen=True):
    """A chunk of an agent's output."""

    data: AgentOutputChunkData
    timestamp: Timestamp = ""
    seq: int | None = None


class ScreenshotAvailable(_Message, tag="screenshot_available", frozen=True):
    """A screenshot is available."""

    data: ScreenshotAvailableData
    timestamp: Timestamp = ""
    seq: int | None = None


class SpecCreated(_Message, tag="spec_created", frozen=True):
    """A spec file was created."""

    data: SpecCreatedData
    timestamp: Timestamp = ""
    seq: int | None = None


class SessionRegistered(_Message, tag="session_registered", frozen=True):
    """Answer to ``register_session``."""

    data: SessionRegisteredData


class TicketNotificationResponse(_Message, tag="ticket_notification_response", frozen=True):
    """Answer to ``ticket_notification``."""

    data: TicketNotificationResponseData


AGENT_MESSAGES: dict[str, type[_Message]] = {
    str(m.__struct_config__.tag): m
    for m in (
        AgentLog,
        AgentUpdated,
        ThinkingBlock,
        TextBlock,
        ToolUsePre,
        ToolUsePost,
        FileChanged,
        WorkflowPhaseTransition,
        AgentOutputChunk,
        ScreenshotAvailable,
        SpecCreated,
    )
}
"""The board's agent stream messages by type: what an ``agent_activity`` event becomes."""

# Client -> server (issue 14)


class RegisterSessionData(_Data, frozen=True):
    """A board's session: the tabs of one browser session share its id."""

    session_id: Annotated[str, Meta(min_length=1, max_length=128)]
    client_info: dict[str, Any] | None = None


class TicketNotificationData(_Data, frozen=True):
    """A card the board created or restarted (``stage`` not backlog: a restart, whose
    ``old_adw_id``'s runs are cancelled and work removed)."""

    id: Annotated[str, Meta(max_length=128)] | Annotated[int, Meta(ge=0)]
    title: Annotated[str, Meta(max_length=500)] = ""
    stage: Annotated[str, Meta(max_length=64)] | None = None
    old_adw_id: AdwId | None = None
    description: str | None = None
    work_item_type: Annotated[str, Meta(max_length=64)] | None = None


class ClientWorkflowLogData(_Data, frozen=True):
    """A log line a board sends about a run, for the run's other followers."""

    adw_id: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    workflow_name: Annotated[str, Meta(max_length=64)]
    message: Annotated[str, Meta(max_length=2000)]
    level: LogLevel
    timestamp: Annotated[str, Meta(max_length=64)]


class RegisterSession(_Message, tag="register_session", frozen=True):
    """Register this connection under a board session; answered by ``session_registered``."""

    data: RegisterSessionData


class TicketNotification(_Message, tag="ticket_notification", frozen=True):
    """A card was created or restarted; answered by ``ticket_notification_response``."""

    data: TicketNotificationData


class ClientWorkflowLog(_Message, tag="workflow_log", frozen=True):
    """A log line from a board about a run: recorded, then sent to the run's followers
    as a ``workflow_log`` with ``seq``."""

    data: ClientWorkflowLogData


BOARD_CLIENT_MESSAGES = (RegisterSession, TicketNotification, ClientWorkflowLog)

# The unions of client messages come last: they name the board's messages above.
ClientMessage = (
    Ping
    | TriggerWorkflow
    | CancelWorkflow
    | Subscribe
    | GetQueueStatus
    | TerminateWorkflow
    | Recover
    | CardMoved
    | Authenticate  # issue 13: authentication
    | ClientAuthChallenge
    # issue 14: the board's own messages
    | RegisterSession
    | TicketNotification
    | ClientWorkflowLog
)
CLIENT_TYPES: frozenset[str] = frozenset(
    str(m.__struct_config__.tag)  # a str tag (msgspec's type allows int tags too)
    for m in get_args(ClientMessage)
)


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
    # issue 14: the board's agent stream and session answers
    | AgentLog
    | AgentUpdated
    | ThinkingBlock
    | TextBlock
    | ToolUsePre
    | ToolUsePost
    | FileChanged
    | WorkflowPhaseTransition
    | AgentOutputChunk
    | ScreenshotAvailable
    | SpecCreated
    | SessionRegistered
    | TicketNotificationResponse
)
