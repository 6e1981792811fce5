"""Messages between actors: frozen Structs, one per intent."""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

from msgspec import Struct

from adwd.actors.auth import Principal
from adwd.events.domain import ResourceUsage, TriggerRejected
from adwd.events.store import NewEvent, StoredEvent
from adwd.events.wire import (
    CancelWorkflowData,
    CardMovedData,
    LogLevel,
    RecoverData,
    SubscribeData,
    TriggerWorkflowData,
)

Send = Callable[[bytes], None]


class Append(Struct, frozen=True):
    """EventLogActor: commit these events (in this order) with the next group;
    then, if given, call ``committed`` (it must only ``tell``: it runs in the
    event log's thread)."""

    events: Sequence[NewEvent]
    committed: Callable[[], None] | None = None


class Committed(Struct, frozen=True):
    """A batch the EventLogActor committed (to the projector and the scheduler)."""

    events: Sequence[StoredEvent]


class Flush(Struct, frozen=True):
    """EventLogActor (to itself): commit what is pending and publish it."""


class Outbox(Protocol):
    """A connection's way out, implemented on the loop by the transport. Every
    method returns at once; the work happens on the loop."""

    def send(self, frame: bytes) -> None:
        """Send a frame now (not part of the event stream)."""

    def fail(self, frame: bytes) -> None:
        """Send this last frame (an ``error``), then close the connection with 1011."""

    def catch_up(self, want: SubscribeData, *, explicit: bool, request_id: str | None) -> None:
        """Send what the connection missed after ``want.since`` (or the current
        state), then go live; ``explicit``: answer with ``subscribed`` first."""

    def resume(self, upto: int) -> None:
        """End a pause that needed no catch-up (covered seq <= upto)."""

    def remove_adw(self, adw_id: str, done: Callable[[dict[str, Any]], None]) -> None:
        """Cancel an adw_id's runs and remove its work, as ``DELETE /api/adws/<adw_id>``
        does; then call ``done`` with that answer's body (from another thread)."""

    # -- security (actors/guard.py): only called while security is on --------

    def open_unread(self) -> None:
        """Start reading the client's frames without delivering runs to it (yet)."""

    def grant_read(
        self, want: SubscribeData, *, explicit: bool, scope: Principal | None = None
    ) -> None:
        """Deliver runs from now on: catch the connection up (as ``catch_up``), then live;
        ``scope``: only the runs that principal may see (None: every run)."""

    def grant_monitor(self) -> None:
        """Deliver news of the service (health, performance, alerts) from now on."""

    def close(self, code: int, reason: str) -> None:
        """Close the connection with ``code`` after what was sent."""

    def later(self, delay: float, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the loop thread) after ``delay`` seconds."""

    def within(self, adw_id: str, scope: Principal, answer: Callable[[bool], None]) -> None:
        """Call ``answer`` (on the loop) with whether run ``adw_id`` is within ``scope``."""

    def auth_failed(self) -> None:
        """Count a failed authentication against the client's address."""


class QueueStatusAsked(Struct, frozen=True):
    """ProjectionActor: answer a connection's ``get_queue_status``: call ``reply``
    with its frames (a ConnectionActor makes that a message to itself)."""

    connection_id: str
    request_id: str | None
    reply: Callable[[list[bytes]], None]


class Inbound(Struct, frozen=True):
    """ConnectionActor: a frame the client sent. ``paused``: the loop paused live
    delivery to this connection because the frame looked like a subscribe."""

    connection_id: str
    frame: bytes | str
    paused: bool = False


class Trigger(Struct, frozen=True):
    """SchedulerActor: a validated trigger from a connection."""

    data: TriggerWorkflowData
    connection_id: str
    principal: str
    request_id: str | None = None


class Reject(Struct, frozen=True):
    """SchedulerActor: record a trigger the connection found invalid."""

    event: TriggerRejected
    connection_id: str
    principal: str


class Cancel(Struct, frozen=True):
    """SchedulerActor: cancel a queued or running run of an adw_id."""

    data: CancelWorkflowData
    connection_id: str
    principal: str
    reply: Send
    request_id: str | None = None
    force: bool = False  # terminate_workflow: SIGKILL now


class Recovery(Struct, frozen=True):
    """ConnectionActor -> SchedulerActor: a client's ``recover``."""

    data: RecoverData
    connection_id: str
    principal: str
    reply: Send
    request_id: str | None = None


class CardMove(Struct, frozen=True):
    """ConnectionActor -> SchedulerActor: a card moved on the board."""

    data: CardMovedData
    connection_id: str
    principal: str
    request_id: str | None = None


class Listening(Struct, frozen=True):
    """SchedulerActor: the transport listens here; tell the children."""

    host: str
    port: int


class RunEnded(Struct, frozen=True):
    """SchedulerActor: a run reached its terminal status; its slot is free."""

    adw_id: str
    workflow_type: str
    completed_in_s: float | None = None  # set when it completed: feeds "typical duration"
    stage: str | None = None  # where the run left its card
    retry_in_s: float | None = None  # a failure to retry after this long
    error_id: str | None = None
    error_class: str | None = None


class RouteOutcome(enum.Enum):
    """What ``SchedulerActor.route_update`` did with a workflow's own HTTP report.

    A plain Enum, not a StrEnum: it never equals a string, so a comparison
    with a stray literal fails loudly instead of silently being False.
    """

    ACCEPTED = "accepted"  # handed to the run's WorkflowActor
    NOT_FOUND = "not_found"  # no run of that adw_id is running
    FORBIDDEN = "forbidden"  # neither from loopback nor with the run's token


class Progress(Struct, frozen=True):
    """WorkflowActor: a progress line from the child."""

    progress_percent: int | None
    current_step: str | None
    message: str | None


class StageReport(Struct, frozen=True):
    """WorkflowActor: the workflow says its card moves to ``stage``."""

    stage: str
    message: str


class LogLine(Struct, frozen=True):
    """WorkflowActor: a line the child wrote (stdout or stderr), for boards."""

    level: LogLevel
    text: str


class Exited(Struct, frozen=True):
    """WorkflowActor: the child exited with this status, having used this much."""

    returncode: int
    usage: ResourceUsage | None = None


class Stop(Struct, frozen=True):
    """WorkflowActor: stop the child (cancel or timeout), SIGKILL after the grace."""

    reason: str
    cancelled: bool = False
    cause: Literal["cancel", "timeout", "output", "heartbeat"] = "cancel"
    force: bool = False  # terminate: SIGKILL now


class Kill(Struct, frozen=True):
    """WorkflowActor: the grace period after SIGTERM ran out."""


Message = Any  # pykka delivers any object; handlers match on the classes above


# -- issue 14: the agent activity stream -------------------------------------


class AgentReport(Struct, frozen=True):
    """WorkflowActor: a notifier POST about the run's agent, as the board's
    ``(message type, data)``; recorded through the run's activity gate."""

    kind: str
    data: dict[str, Any]


class AgentRecords(Struct, frozen=True):
    """WorkflowActor: what the run's watcher read: ``(path, record)`` items (a
    record is decoded JSON, or an int: the size of a line skipped) and the
    offsets (path -> [inode, offset]) reached."""

    items: list[tuple[str, Any]]
    offsets: dict[str, list[int]]
    serial: int = 0  # the watcher's batch number: only the newest batch's offsets count
