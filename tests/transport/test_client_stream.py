"""The client's resume position alone: pure, no socket (the client against
real servers is in tests/integration/test_client.py)."""

from __future__ import annotations

from adwd.events.wire import (
    SubscribedData,
)
from adwd.transport.client_stream import Position, Verdict
from tests.messages import status_update, workflow_metrics


def test_position_resumes_before_the_boundary_seq_and_drops_repeats() -> None:
    pos = Position()
    pos.opened()
    assert pos.accept(status_update(4, "a")) is Verdict.DROP  # before subscribed
    pos.subscribed(
        SubscribedData(epoch="e", recovered=False, resume_from=5, last_seq=5, message="")
    )
    assert pos.accept(status_update(4, "a")) is Verdict.STATE
    assert pos.accept(status_update(6, "a")) is Verdict.NEW
    assert pos.accept(status_update(8, "a", "completed")) is Verdict.NEW
    assert (pos.last_seq, pos.resume_seq) == (8, 6)
    pos.opened()
    pos.subscribed(SubscribedData(epoch="e", recovered=True, resume_from=6, last_seq=9, message=""))
    assert pos.accept(status_update(8, "a", "completed")) is Verdict.DROP
    assert pos.accept(workflow_metrics(8, "a")) is Verdict.NEW
    assert pos.accept(workflow_metrics(8, "a")) is Verdict.DROP
    assert pos.accept(status_update(7, "a")) is Verdict.DROP
    assert pos.accept(status_update(9, "b")) is Verdict.NEW
    assert (pos.last_seq, pos.resume_seq, pos.epoch) == (9, 8, "e")
