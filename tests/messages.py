"""Server messages with plausible data, built by tests that play the server."""

from __future__ import annotations

from adwd.events.wire import (
    RunStatus,
    StatusUpdate,
    StatusUpdateData,
    WorkflowMetrics,
    WorkflowMetricsData,
)


def status_update(seq: int, adw_id: str, status: RunStatus = "running") -> StatusUpdate:
    """A ``status_update`` of an ``adw_sleep`` run at ``seq``."""
    data = StatusUpdateData(
        adw_id=adw_id,
        status=status,
        message="",
        progress_percent=50,
        current_step="Step",
        workflow_name="adw_sleep",
    )
    return StatusUpdate(data, seq=seq)


def workflow_metrics(seq: int, adw_id: str) -> WorkflowMetrics:
    """The final ``workflow_metrics`` of a completed ``adw_sleep`` run at ``seq``."""
    data = WorkflowMetricsData(
        adw_id=adw_id,
        execution_time=1.0,
        resource_usage={},
        performance_score=100.0,
        workflow_name="adw_sleep",
        phase="final",
        status="completed",
    )
    return WorkflowMetrics(data, seq=seq)
