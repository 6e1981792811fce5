"""Bodies of the HTTP progress endpoints that existing ADW scripts POST to.

``POST /api/workflow-updates``: ``{"type": "status_update" | "workflow_log", "data": {...}}``.
``POST /api/stage-event``: ``{adw_id, workflow_name, from_stage, to_stage, message?}``, or the
orchestrator form ``{adw_id, event_type, stage_name, previous_stage?, next_stage?}``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from adwd.events.wire import AdwId, Percent

Text = Annotated[str, Meta(max_length=2000)]
Stage = Annotated[str, Meta(max_length=64)]


class StatusBody(Struct, frozen=True, kw_only=True):
    """A script's own status report for its run."""

    adw_id: AdwId
    status: Annotated[str, Meta(max_length=32)] = "running"
    message: Text = ""
    progress_percent: Percent | None = None
    # The scripts' notifier sends null for a step it does not know.
    current_step: Annotated[str, Meta(max_length=200)] | None = ""


class LogBody(Struct, frozen=True, kw_only=True):
    """A log line for boards."""

    adw_id: AdwId
    message: Text
    level: Literal["INFO", "SUCCESS", "WARNING", "ERROR"] = "INFO"
    workflow_name: Annotated[str, Meta(max_length=64)] = ""


class StatusUpdatePost(Struct, frozen=True, tag="status_update", tag_field="type"):
    """``{"type": "status_update", "data": {...}}``."""

    data: StatusBody


class WorkflowLogPost(Struct, frozen=True, tag="workflow_log", tag_field="type"):
    """``{"type": "workflow_log", "data": {...}}``."""

    data: LogBody


WorkflowUpdate = StatusUpdatePost | WorkflowLogPost


class StageEvent(Struct, frozen=True, kw_only=True):
    """Either form of a stage event; ``target()`` says where the card goes."""

    adw_id: AdwId
    workflow_name: Annotated[str, Meta(max_length=64)] = ""
    from_stage: Stage | None = None
    to_stage: Stage | None = None
    message: Text = ""
    event_type: Annotated[str, Meta(max_length=64)] | None = None
    stage_name: Stage | None = None
    previous_stage: Stage | None = None
    next_stage: Stage | None = None

    def target(self) -> str | None:
        """The stage the card moves to, or None if the body names none."""
        if self.to_stage:
            return self.to_stage
        kind = (self.event_type or "").lower()
        if "fail" in kind or "error" in kind:
            return "errored"
        if ("complete" in kind or "finish" in kind or "end" in kind) and self.next_stage:
            return self.next_stage
        return self.stage_name


workflow_update_decoder = msgspec.json.Decoder(WorkflowUpdate)
stage_event_decoder = msgspec.json.Decoder(StageEvent)


# --------------------------------------------------------------------------
# The scripts' notifier: agent activity endpoints (issue 14)
#
# Bodies as adw_modules/websocket_client.py (WebSocketNotifier) posts them.
# Fields it sends that adwd does not use are ignored; a wrong type is a 400.

Name = Annotated[str, Meta(max_length=200)]
Path = Annotated[str, Meta(max_length=1000)]
Json = dict[str, Any]
AgentEventType = Literal[
    "state_change",
    "log_entry",
    "file_operation",
    "thinking",
    "tool_execution_pre",
    "tool_execution_post",
    "text_block",
]


class AgentStateUpdate(Struct, frozen=True, kw_only=True):
    """``POST /api/agent-state-update``: ``data`` is checked against ``event_type``'s body."""

    adw_id: AdwId
    event_type: AgentEventType
    data: msgspec.Raw = msgspec.Raw(b"{}")
    timestamp: Annotated[str, Meta(max_length=64)] | None = None


class StateChangeBody(Struct, frozen=True, kw_only=True):
    """``state_change``: the agent's state (``ADWState.notify_state_change``)."""

    status: Name | None = None
    workflow_name: Name | None = None
    current_step: Name | None = None
    message: str | None = None
    state_snapshot: Json | None = None
    state: Json | None = None
    changed_fields: list[Name] | None = None


class LogEntryBody(Struct, frozen=True, kw_only=True):
    """``log_entry``: a detailed log line."""

    message: str = ""
    level: Annotated[str, Meta(max_length=16)] = "INFO"
    details: str | None = None
    context: Json | None = None


class FileOperationBody(Struct, frozen=True, kw_only=True):
    """``file_operation``: a file the agent read, wrote, changed or deleted."""

    file_path: Path
    operation: Annotated[str, Meta(max_length=16)] = "modify"
    diff: str | None = None
    summary: str | None = None
    lines_added: Annotated[int, Meta(ge=0)] = 0
    lines_removed: Annotated[int, Meta(ge=0)] = 0


class ThinkingBody(Struct, frozen=True, kw_only=True):
    """``thinking``: a thinking block."""

    content: str = ""
    reasoning_type: Name | None = None
    duration_ms: Annotated[int, Meta(ge=0)] | None = None
    sequence: int | None = None


class ToolExecutionBody(Struct, frozen=True, kw_only=True):
    """``tool_execution_pre`` and ``tool_execution_post``."""

    tool_name: Name = ""
    tool_use_id: Name | None = None
    input: Json | None = None
    tool_input: Json | None = None
    output: str | None = None
    tool_output: str | None = None
    duration_ms: Annotated[int, Meta(ge=0)] | None = None
    success: bool | None = None
    status: Annotated[str, Meta(max_length=16)] | None = None
    error: str | None = None


class TextBlockBody(Struct, frozen=True, kw_only=True):
    """``text_block``: text the agent wrote."""

    content: str = ""
    sequence: int | None = None


AGENT_BODIES: dict[str, type[Struct]] = {
    "state_change": StateChangeBody,
    "log_entry": LogEntryBody,
    "file_operation": FileOperationBody,
    "thinking": ThinkingBody,
    "tool_execution_pre": ToolExecutionBody,
    "tool_execution_post": ToolExecutionBody,
    "text_block": TextBlockBody,
}


class PhaseTransitionPost(Struct, frozen=True, kw_only=True):
    """``POST /api/workflow-phase-transition``."""

    adw_id: AdwId
    phase_to: Annotated[str, Meta(min_length=1, max_length=64)]
    phase_from: Annotated[str, Meta(max_length=64)] | None = None
    workflow_name: Name | None = None
    metadata: Json | None = None


class OutputChunkPost(Struct, frozen=True, kw_only=True):
    """``POST /api/agent-output-chunk``."""

    adw_id: AdwId
    agent_role: Annotated[str, Meta(min_length=1, max_length=64)]
    content: Annotated[str, Meta(min_length=1)]
    line_number: int | None = None
    total_lines: int | None = None
    is_complete: bool = False


class ScreenshotPost(Struct, frozen=True, kw_only=True):
    """``POST /api/screenshot-available``."""

    adw_id: AdwId
    screenshot_path: Annotated[str, Meta(min_length=1, max_length=1000)]
    screenshot_type: Annotated[str, Meta(max_length=32)] = "review"
    metadata: Json | None = None


class SpecCreatedPost(Struct, frozen=True, kw_only=True):
    """``POST /api/spec-created``."""

    adw_id: AdwId
    spec_path: Annotated[str, Meta(min_length=1, max_length=1000)]
    spec_type: Annotated[str, Meta(max_length=32)] = "plan"
    metadata: Json | None = None


agent_state_decoder = msgspec.json.Decoder(AgentStateUpdate)
agent_body_decoders = {name: msgspec.json.Decoder(body) for name, body in AGENT_BODIES.items()}
phase_transition_decoder = msgspec.json.Decoder(PhaseTransitionPost)
output_chunk_decoder = msgspec.json.Decoder(OutputChunkPost)
screenshot_decoder = msgspec.json.Decoder(ScreenshotPost)
spec_created_decoder = msgspec.json.Decoder(SpecCreatedPost)
