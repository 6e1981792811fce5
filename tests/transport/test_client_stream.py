"""The client's resume position alone: pure, no socket (the client against
real servers is in tests/integration/test_client.py)."""

from __future__ import annotations

from adwd.events.wire import (
    RunStatus,
    StatusUpdate,
    StatusUpdateData,
    SubscribedData,
    WorkflowMetrics,
    WorkflowMetricsData,
)
from adwd.transport.client_stream import Position, Verdict


def _update(seq: int, adw_id: str, status: RunStatus = "running") -> StatusUpdate:
    data = StatusUpdateData(
        adw_id=adw_id,
        status=status,
        message="",
        progress_percent=50,
        current_step="Step",
        workflow_name="adw_sleep",
    )
    return StatusUpdate(data, seq=seq)


def _metrics(seq: int, adw_id: str) -> WorkflowMetrics:
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


def test_position_resumes_before_the_boundary_seq_and_drops_repeats() -> None:
    pos = Position()
    pos.opened()
    assert pos.accept(_update(4, "a")) is Verdict.DROP  # before subscribed
    pos.subscribed(
        SubscribedData(epoch="e", recovered=False, resume_from=5, last_seq=5, message="")
    )
    assert pos.accept(_update(4, "a")) is Verdict.STATE
    assert pos.accept(_update(6, "a")) is Verdict.NEW
    assert pos.accept(_update(8, "a", "completed")) is Verdict.NEW
    assert (pos.last_seq, pos.resume_seq) == (8, 6)
    pos.opened()
    pos.subscribed(SubscribedData(epoch="e", recovered=True, resume_from=6, last_seq=9, message=""))
    assert pos.accept(_update(8, "a", "completed")) is Verdict.DROP
    assert pos.accept(_metrics(8, "a")) is Verdict.NEW
    assert pos.accept(_metrics(8, "a")) is Verdict.DROP
    assert pos.accept(_update(7, "a")) is Verdict.DROP
    assert pos.accept(_update(9, "b")) is Verdict.NEW
    assert (pos.last_seq, pos.resume_seq, pos.epoch) == (9, 8, "e")
