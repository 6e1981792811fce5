"""What clients see: committed events and run views as wire messages.

Pure functions, shared by live delivery, replay on resume and the snapshot
a joining client gets, so the three cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import msgspec

from adwd.events.codec import encode
from adwd.events.domain import (
    AgentActivity,
    AlertFired,
    AlertResolved,
    CancelRequested,
    ErrorReported,
    RecoveryOffered,
    RunCompleted,
    RunFailed,
    RunLogged,
    RunProgress,
    RunQueued,
    RunStarted,
    StageChanged,
    TriggerDeduplicated,
    TriggerRejected,
)
from adwd.events.errors import ErrorCode
from adwd.events.store import StoredEvent
from adwd.events.wire import (
    AgentLog,
    AgentLogData,
    AgentOutputChunk,
    AgentOutputChunkData,
    AgentUpdated,
    AgentUpdatedData,
    Alert,
    AlertData,
    CancelResponse,
    CancelResponseData,
    ErrorReport,
    ErrorReportData,
    FileChanged,
    FileChangedData,
    RecoveryInstructions,
    RecoveryInstructionsData,
    ScreenshotAvailable,
    ScreenshotAvailableData,
    SpecCreated,
    SpecCreatedData,
    StageTransition,
    StageTransitionData,
    StatusUpdate,
    StatusUpdateData,
    TextBlock,
    TextBlockData,
    ThinkingBlock,
    ThinkingBlockData,
    ToolUsePost,
    ToolUsePostData,
    ToolUsePre,
    ToolUsePreData,
    TriggerResponse,
    TriggerResponseData,
    WorkflowLog,
    WorkflowLogData,
    WorkflowMetrics,
    WorkflowMetricsData,
    WorkflowPhaseTransition,
    WorkflowPhaseTransitionData,
)
from adwd.projections.metrics import performance_score, resource_dict
from adwd.projections.runs import RunView

# (connection id, or None for followers of the run; adw_id or None; frame)
Delivery = tuple[str | None, str | None, bytes]

RECENT_ENDED = 20  # ended runs a joining client is shown besides the active ones


def _iso(ts: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")


def wire_messages(stored: StoredEvent) -> list[Delivery]:
    """The messages one committed event becomes, and who gets them."""
    e = stored.event
    seq = stored.seq
    if isinstance(e, RunQueued | TriggerDeduplicated | TriggerRejected):
        if e.connection_id is None:
            return []
        response = TriggerResponse(_response(e), seq=seq, request_id=e.request_id)
        return [(e.connection_id, None, encode(response))]
    if isinstance(e, RunStarted):
        metrics = WorkflowMetricsData(
            adw_id=e.adw_id,
            execution_time=0.0,
            resource_usage={},
            performance_score=0.0,
            workflow_name=e.workflow_type,
            phase="start",
            status="started",
            expected_execution_time=e.expected_s,
        )
        return [
            (None, e.adw_id, encode(StatusUpdate(_started(e), seq=seq))),
            (None, e.adw_id, encode(WorkflowMetrics(metrics, seq=seq))),
        ]
    if isinstance(e, RunProgress):
        data = StatusUpdateData(
            adw_id=e.adw_id,
            status="running",
            message=e.message,
            progress_percent=e.progress_percent,
            current_step=e.current_step,
            workflow_name=e.workflow_type,
        )
        return [(None, e.adw_id, encode(StatusUpdate(data, seq=seq)))]
    if isinstance(e, RunCompleted | RunFailed):
        metrics = WorkflowMetricsData(
            adw_id=e.adw_id,
            execution_time=e.duration_s or 0.0,
            resource_usage=resource_dict(e),
            performance_score=performance_score(e),
            workflow_name=e.workflow_type,
            phase="final",
            status="completed" if isinstance(e, RunCompleted) else "failed",
            expected_execution_time=e.expected_s,
        )
        return [
            (None, e.adw_id, encode(StatusUpdate(_ended(e), seq=seq))),
            (None, e.adw_id, encode(WorkflowMetrics(metrics, seq=seq))),
        ]
    if isinstance(e, StageChanged):
        move = StageTransitionData(
            adw_id=e.adw_id,
            workflow_name=e.workflow_type,
            from_stage=e.from_stage,
            to_stage=e.to_stage,
            message=e.message,
            timestamp=_iso(stored.ts),
        )
        return [(None, e.adw_id, encode(StageTransition(move, seq=seq)))]
    if isinstance(e, RunLogged):
        line = WorkflowLogData(
            adw_id=e.adw_id,
            workflow_name=e.workflow_type,
            message=e.message,
            level=e.level,
            timestamp=_iso(stored.ts),
        )
        return [(None, e.adw_id, encode(WorkflowLog(line, seq=seq)))]
    if isinstance(e, CancelRequested):
        if e.connection_id is None:
            return []
        message = (
            f"{'terminating (SIGKILL, no grace)' if e.force else 'cancelling'} the runs of "
            f"{e.adw_id}"
            if e.outcome == "cancelling"
            else f"no queued or running run has adw_id {e.adw_id!r}"
        )
        reply = CancelResponse(
            CancelResponseData(adw_id=e.adw_id, status=e.outcome, message=message),
            seq=seq,
            request_id=e.request_id,
        )
        return [(e.connection_id, None, encode(reply))]
    if isinstance(e, AgentActivity):
        return _agent_message(e, seq)
    if isinstance(e, ErrorReported | RecoveryOffered):
        return _failure_messages(e, stored)
    if isinstance(e, AlertFired | AlertResolved):
        return [(None, None, encode(Alert(_alert(e, stored.ts), seq=seq)))]  # to everyone
    return []


def _failure_messages(e: ErrorReported | RecoveryOffered, stored: StoredEvent) -> list[Delivery]:
    """A failure's ``error_report``, or what can be done about it (``recovery_instructions``)."""
    seq = stored.seq
    if isinstance(e, ErrorReported):
        report = ErrorReportData(
            error_id=e.error_id,
            category=e.category,
            severity=e.severity,
            description=e.description,
            suggested_actions=e.suggested_actions,
            recovery_options=e.recovery_options,
            timestamp=_iso(stored.ts),
            adw_id=e.adw_id or None,
            error_class=e.error_class or None,
            workflow_name=e.workflow_type or None,
            attempt=e.attempt,
            retry_in_s=e.retry_in_s,
        )
        return [(None, e.adw_id or None, encode(ErrorReport(report, seq=seq)))]
    instructions = RecoveryInstructionsData(
        error_id=e.error_id,
        steps=e.steps,
        estimated_time=e.estimated_time,
        success_probability=e.success_probability,
        adw_id=e.adw_id,
        option=e.option,
        based_on=e.based_on,
        options=e.options,
    )
    return [(None, e.adw_id, encode(RecoveryInstructions(instructions, seq=seq)))]


# The board's agent stream (issue 14): the event's data is the message's data; the
# envelope repeats its timestamp (the original server sent it there, the board reads
# data.timestamp).
def _c(data: dict[str, Any], cls: type[Any]) -> Any:
    return msgspec.convert(data, cls)


_AGENT_MESSAGES: dict[str, Callable[[dict[str, Any], int], bytes]] = {
    "agent_log": lambda d, seq: encode(
        AgentLog(_c(d, AgentLogData), timestamp=d["timestamp"], seq=seq)
    ),
    "agent_updated": lambda d, seq: encode(
        AgentUpdated(_c(d, AgentUpdatedData), timestamp=d["timestamp"], seq=seq)
    ),
    "thinking_block": lambda d, seq: encode(
        ThinkingBlock(_c(d, ThinkingBlockData), timestamp=d["timestamp"], seq=seq)
    ),
    "text_block": lambda d, seq: encode(
        TextBlock(_c(d, TextBlockData), timestamp=d["timestamp"], seq=seq)
    ),
    "tool_use_pre": lambda d, seq: encode(
        ToolUsePre(_c(d, ToolUsePreData), timestamp=d["timestamp"], seq=seq)
    ),
    "tool_use_post": lambda d, seq: encode(
        ToolUsePost(_c(d, ToolUsePostData), timestamp=d["timestamp"], seq=seq)
    ),
    "file_changed": lambda d, seq: encode(
        FileChanged(_c(d, FileChangedData), timestamp=d["timestamp"], seq=seq)
    ),
    "workflow_phase_transition": lambda d, seq: encode(
        WorkflowPhaseTransition(
            _c(d, WorkflowPhaseTransitionData), timestamp=d["timestamp"], seq=seq
        )
    ),
    "agent_output_chunk": lambda d, seq: encode(
        AgentOutputChunk(_c(d, AgentOutputChunkData), timestamp=d["timestamp"], seq=seq)
    ),
    "screenshot_available": lambda d, seq: encode(
        ScreenshotAvailable(_c(d, ScreenshotAvailableData), timestamp=d["timestamp"], seq=seq)
    ),
    "spec_created": lambda d, seq: encode(
        SpecCreated(_c(d, SpecCreatedData), timestamp=d["timestamp"], seq=seq)
    ),
}


def _agent_message(e: AgentActivity, seq: int) -> list[Delivery]:
    """An agent's activity, to the run's followers."""
    build = _AGENT_MESSAGES.get(e.kind)
    if build is None:
        return []  # a kind a newer version wrote: nothing this one can show
    try:
        frame = build(e.data, seq)
    except msgspec.ValidationError:
        return []  # a stored payload this version cannot show; the log keeps it
    return [(None, e.adw_id, frame)]


def _alert(e: AlertFired | AlertResolved, ts: float) -> AlertData:
    """An alert's fire or resolve as the ``alert`` message (monitoring, issue 12)."""
    if isinstance(e, AlertFired):
        return AlertData(
            alert_id=e.alert_id,
            level=e.level,
            message=e.message,
            component=e.component,
            timestamp=_iso(ts),
            actions_required=e.actions_required,
        )
    return AlertData(
        alert_id=e.alert_id,
        level="info",
        message=e.message,
        component=e.component,
        timestamp=_iso(ts),
        actions_required=[],
        state="resolved",
    )


def _response(e: RunQueued | TriggerDeduplicated | TriggerRejected) -> TriggerResponseData:
    # ``outcome`` comes from the kind of event, so clients need not read ``message``.
    if isinstance(e, TriggerRejected):
        return TriggerResponseData(
            status="rejected",
            adw_id=e.adw_id,
            workflow_name=e.workflow_type,
            logs_path="",
            error=_code(e.error),
            message=e.message,
            details=e.details,
            outcome="rejected",
        )
    if isinstance(e, RunQueued):
        return TriggerResponseData(
            status="accepted",
            adw_id=e.adw_id,
            workflow_name=e.workflow_type,
            logs_path=e.logs_path,
            message="queued",
            outcome="queued",
        )
    return TriggerResponseData(
        status="accepted",
        adw_id=e.adw_id,
        workflow_name=e.workflow_type,
        logs_path=e.logs_path,
        message="already accepted (queued, running, or the same request answered before); "
        "no new run started",
        outcome="deduplicated",
    )


def _code(stored: str) -> ErrorCode:
    """The wire code of a stored rejection. The event keeps a plain string (a
    stored type never narrows); every code written so far is an ErrorCode
    value, and one this version does not know is sent as ``internal`` rather
    than failing the replay of the whole log."""
    try:
        return ErrorCode(stored)
    except ValueError:
        return ErrorCode.INTERNAL


def _started(e: RunStarted) -> StatusUpdateData:
    return StatusUpdateData(
        adw_id=e.adw_id,
        status="started",
        message=f"{e.workflow_type} started (pid {e.pid})",
        progress_percent=0,
        current_step="Starting",
        workflow_name=e.workflow_type,
    )


def _final(
    adw_id: str,
    workflow_type: str,
    *,
    completed: bool,
    duration_s: float | None,
    reason: str,
    progress_percent: int,
    cancelled: bool,
) -> StatusUpdateData:
    """A run's last status_update: the same live (from its event) and in a snapshot."""
    if completed:
        return StatusUpdateData(
            adw_id=adw_id,
            status="completed",
            message=f"{workflow_type} completed in {duration_s or 0:.2f} s",
            progress_percent=100,
            current_step="Completed",
            workflow_name=workflow_type,
        )
    return StatusUpdateData(
        adw_id=adw_id,
        status="failed",
        message=reason,
        progress_percent=progress_percent,
        current_step="Cancelled" if cancelled else "Failed",
        workflow_name=workflow_type,
        cancelled=cancelled,
    )


def _ended(e: RunCompleted | RunFailed) -> StatusUpdateData:
    failed = e if isinstance(e, RunFailed) else None
    return _final(
        e.adw_id,
        e.workflow_type,
        completed=failed is None,
        duration_s=e.duration_s,
        reason=failed.reason if failed else "",
        progress_percent=failed.progress_percent if failed else 100,
        cancelled=failed.cancelled if failed else False,
    )


def view_status(view: RunView) -> StatusUpdateData | None:
    """A run's current state as one status_update (None while it waits)."""
    adw_id, workflow_type = view.key
    if view.status == "running":
        return StatusUpdateData(
            adw_id=adw_id,
            status="running",
            message=view.message,
            progress_percent=view.progress_percent,
            current_step=view.current_step or "Starting",
            workflow_name=workflow_type,
        )
    if view.status in ("completed", "failed", "cancelled"):
        return _final(
            adw_id,
            workflow_type,
            completed=view.status == "completed",
            duration_s=view.duration_s,
            reason=view.message,
            progress_percent=view.progress_percent,
            cancelled=view.cancelled,
        )
    return None


def snapshot(views: Collection[RunView], adw_ids: Collection[str] | None) -> list[bytes]:
    """The current state a joining client gets: every running run and the
    ``RECENT_ENDED`` most recently ended ones, oldest change first."""
    chosen = [v for v in views if adw_ids is None or v.key[0] in adw_ids]
    active = [v for v in chosen if v.status == "running"]
    ended = sorted((v for v in chosen if v.status in ("completed", "failed", "cancelled")),
                   key=lambda v: v.last_seq)[-RECENT_ENDED:]  # fmt: skip
    frames = []
    for view in sorted(active + ended, key=lambda v: v.last_seq):
        data = view_status(view)
        if data is not None:
            frames.append(encode(StatusUpdate(data, seq=view.last_seq)))
    return frames
