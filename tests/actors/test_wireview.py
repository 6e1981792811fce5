"""What clients branch on is a typed field of the wire message, set from the
kind of event, never only in the human-readable text."""

from __future__ import annotations

import pytest

from adwd.actors.wireview import snapshot, wire_messages
from adwd.events.codec import decode_server
from adwd.events.domain import (
    DomainEvent,
    RunFailed,
    RunQueued,
    TriggerDeduplicated,
    TriggerRejected,
)
from adwd.events.errors import ErrorCode
from adwd.events.store import StoredEvent
from adwd.events.wire import ServerMessage, StatusUpdate, TriggerResponse
from adwd.projections.runs import RunsProjection, RunView


def _stored(event: DomainEvent, seq: int = 7) -> StoredEvent:
    return StoredEvent(seq, 0.0, "s", "t", 1, "p", "", event)


def _sent(event: DomainEvent) -> list[ServerMessage]:
    return [decode_server(frame) for _to, _about, frame in wire_messages(_stored(event))]


def _queued(**overrides: object) -> RunQueued:
    fields: dict[str, object] = {
        "adw_id": "a1",
        "workflow_type": "adw_plan_iso",
        "logs_path": "/l",
        "connection_id": "c1",
    }
    return RunQueued(**{**fields, **overrides})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("event", "status", "outcome"),
    [
        (_queued(), "accepted", "queued"),
        (
            TriggerDeduplicated(
                adw_id="a1", workflow_type="adw_plan_iso", logs_path="/l", connection_id="c1"
            ),
            "accepted",
            "deduplicated",
        ),
        (
            TriggerRejected(error="unavailable", message="full", connection_id="c1"),
            "rejected",
            "rejected",
        ),
    ],
    ids=["queued", "deduplicated", "rejected"],
)
def test_a_trigger_response_says_what_the_trigger_did(
    event: DomainEvent, status: str, outcome: str
) -> None:
    [response] = _sent(event)
    assert isinstance(response, TriggerResponse)
    assert (response.data.status, response.data.outcome) == (status, outcome)


def test_a_rejection_carries_its_code_as_the_enum() -> None:
    [response] = _sent(TriggerRejected(error="unavailable", message="full", connection_id="c1"))
    assert isinstance(response, TriggerResponse)
    assert response.data.error is ErrorCode.UNAVAILABLE


def test_a_stored_code_this_version_does_not_know_does_not_break_the_replay() -> None:
    [response] = _sent(TriggerRejected(error="from_the_future", message="m", connection_id="c"))
    assert isinstance(response, TriggerResponse)
    assert response.data.error is ErrorCode.INTERNAL


@pytest.mark.parametrize("cancelled", [True, False])
def test_a_cancelled_run_is_flagged_live_and_in_the_snapshot(cancelled: bool) -> None:
    failed = RunFailed(adw_id="a1", workflow_type="adw_plan_iso", reason="r", cancelled=cancelled)
    update = _sent(failed)[0]
    assert isinstance(update, StatusUpdate)
    assert update.data.cancelled is cancelled

    runs = RunsProjection()
    runs.apply(_stored(_queued(), seq=1))
    runs.apply(_stored(failed))
    [frame] = snapshot(list(runs.runs.values()), None)
    joined = decode_server(frame)
    assert isinstance(joined, StatusUpdate)
    assert joined.data == update.data


def test_only_a_failed_update_can_be_flagged_cancelled() -> None:
    view = RunView(_queued(), queued_seq=1, status="running", cancelled=False, last_seq=3)
    [frame] = snapshot([view], None)
    running = decode_server(frame)
    assert isinstance(running, StatusUpdate)
    assert running.data.cancelled is False
