"""Bodies of the HTTP progress endpoints that existing ADW scripts POST to.

``POST /api/workflow-updates``: ``{"type": "status_update" | "workflow_log", "data": {...}}``.
``POST /api/stage-event``: ``{adw_id, workflow_name, from_stage, to_stage, message?}``, or the
orchestrator form ``{adw_id, event_type, stage_name, previous_stage?, next_stage?}``.
"""

from __future__ import annotations

from typing import Annotated, Literal

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
