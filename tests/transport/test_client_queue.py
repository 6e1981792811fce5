"""The client's pending commands alone: replies settle them by request_id, and
what a trigger did comes from ``outcome``, not from the reply's text."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from adwd.events.errors import ErrorCode
from adwd.events.wire import (
    Error,
    ErrorData,
    TriggerOutcome,
    TriggerResponse,
    TriggerResponseData,
)
from adwd.transport.client_queue import Command, CommandKind, CommandQueue
from adwd.transport.client_stream import ServerError


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """Futures need a loop; none has to run: settling is synchronous."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _issue(
    queue: CommandQueue, loop: asyncio.AbstractEventLoop, kind: CommandKind, issued_seq: int = 3
) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = loop.create_future()
    queue.add(Command(f"r-{kind}", kind, [], future, issued_seq))
    return future


def _accepted(outcome: TriggerOutcome | None, seq: int = 10) -> TriggerResponse:
    data = TriggerResponseData(
        status="accepted",
        adw_id="a1",
        workflow_name="adw_plan_iso",
        logs_path="/l",
        # The same text either way: only ``outcome`` may decide.
        message="queued",
        outcome=outcome,
    )
    return TriggerResponse(data, seq=seq, request_id="r-trigger")


@pytest.mark.parametrize(
    ("outcome", "since"),
    [("queued", 10), ("deduplicated", 3), (None, 3)],
    ids=["new-run", "repeat", "server-without-outcome"],
)
def test_follow_starts_after_a_new_runs_response_else_at_the_issue(
    loop: asyncio.AbstractEventLoop, outcome: TriggerOutcome | None, since: int
) -> None:
    queue = CommandQueue()
    future = _issue(queue, loop, "trigger", issued_seq=3)
    queue.settle(_accepted(outcome), now=0.0)
    assert future.result().outcome == outcome
    assert queue.triggered("a1") == (since, "adw_plan_iso")


@pytest.mark.parametrize(
    ("kind", "code", "settles"),
    [
        ("trigger", ErrorCode.VALIDATION_ERROR, False),  # its trigger_response follows
        ("cancel", ErrorCode.NOT_FOUND, False),  # its cancel_response follows
        ("cancel", ErrorCode.VALIDATION_ERROR, True),
        ("ping", ErrorCode.VALIDATION_ERROR, True),
    ],
)
def test_an_error_settles_a_command_unless_its_own_reply_follows(
    loop: asyncio.AbstractEventLoop, kind: CommandKind, code: ErrorCode, settles: bool
) -> None:
    queue = CommandQueue()
    future = _issue(queue, loop, kind)
    queue.settle(Error(ErrorData(message="m", code=code), request_id=f"r-{kind}"), now=0.0)
    assert future.done() is settles
    if settles:
        error = future.exception()
        assert isinstance(error, ServerError)
        assert error.code is code
