"""ConnectionActor: the one place every inbound message of a connection passes.

It decodes and validates each frame, and owns the connection's principal:
authentication, permissions and rate limits belong here and nowhere else.
Replies that are not derived from events (pong, error) go straight back
through ``send``; everything else becomes a command to the scheduler.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pykka

from actors.messages import Cancel, Inbound, Outbox, Reject, Trigger
from actors.wireview import wire_messages
from events.codec import decode_client, encode
from events.domain import TriggerRejected
from events.errors import ErrorCode, ProtocolError, StoreError
from events.store import EventStore
from events.wire import (
    ADW_ID_PATTERN,
    WORKFLOW_TYPE_PATTERN,
    CancelWorkflow,
    Error,
    ErrorData,
    GetQueueStatus,
    Ping,
    Pong,
    Subscribe,
    Subscribed,
    SubscribeData,
    SubscribedData,
    TriggerWorkflow,
)

CATCH_UP_CHUNK = 500  # frames per hand-over to the loop during a catch-up


class _Peek(msgspec.Struct):
    """Just enough of a frame to tell what it tried to be."""

    type: Any = None
    data: Any = None
    request_id: Any = None


_peek = msgspec.json.Decoder(_Peek)


class ConnectionActor(pykka.ThreadingActor):
    """Decodes, validates and dispatches the frames of one connection."""

    def __init__(
        self,
        *,
        connection_id: str,
        outbox: Outbox,
        scheduler: pykka.ActorRef[pykka.Actor],
        projector: pykka.ActorRef[pykka.Actor],
        events_path: Path,
        workflow_types: frozenset[str],
        since: int | None = None,
        epoch: str | None = None,
        principal: str = "anonymous",
    ) -> None:
        super().__init__()
        self._id = connection_id
        self._outbox = outbox
        self._send = outbox.send
        self._scheduler = scheduler
        self._projector = projector
        self._events_path = events_path
        self._principal = principal
        self._workflow_types = workflow_types
        self._initial = SubscribeData(since=since, epoch=epoch)

    def on_start(self) -> None:
        """Bring the new connection up to date before it goes live."""
        self._sync(self._initial, explicit=self._initial.since is not None)

    def on_receive(self, message: object) -> object:
        """Handle one inbound frame."""
        if isinstance(message, Inbound):
            subscribed = self._on_frame(message.frame)
            if message.paused and not subscribed:
                self._outbox.resume(0)  # it was not a subscribe after all
        return None

    def _on_frame(self, frame: bytes | str) -> bool:
        """Handle a frame; True if it was a subscribe (which resumes delivery itself)."""
        try:
            msg = decode_client(frame)
        except ProtocolError as problem:
            self._on_invalid(frame, problem)
            return False
        if isinstance(msg, Ping):
            self._send(encode(Pong(timestamp=int(time.time() * 1000), request_id=msg.request_id)))
        elif isinstance(msg, TriggerWorkflow):
            if msg.data.workflow_type not in self._workflow_types:
                self._on_invalid(frame, self._unknown_workflow(msg.data.workflow_type))
            else:
                self._scheduler.tell(Trigger(msg.data, self._id, self._principal, msg.request_id))
        elif isinstance(msg, CancelWorkflow):
            self._scheduler.tell(
                Cancel(msg.data, self._id, self._principal, self._send, msg.request_id)
            )
        elif isinstance(msg, Subscribe):
            self._sync(msg.data, explicit=True, request_id=msg.request_id)
            return True
        elif isinstance(msg, GetQueueStatus):
            rid = msg.request_id
            for reply in self._ask(lambda p: p.queue_status_frames(self._id, rid), []):
                self._send(reply)
        return False

    def _ask(self, question: Callable[[Any], Any], default: Any) -> Any:
        try:
            return question(self._projector.proxy()).get(timeout=30)
        except (pykka.ActorDeadError, pykka.Timeout):  # shutting down
            return default

    def _sync(self, want: SubscribeData, *, explicit: bool, request_id: str | None = None) -> None:
        """Catch up: the events after ``want.since`` if the log still holds them,
        else the current state; then go live with no gap and no duplicate."""
        adw_ids = set(want.adw_ids) if want.adw_ids is not None else None
        try:
            store = EventStore(self._events_path, readonly=True)
        except StoreError:
            self._outbox.resume(0, follows=adw_ids)
            return
        try:
            last, epoch = store.last_seq(), store.epoch
            why = _unrecoverable(want, epoch, last, store.first_seq())
            if why is None:
                start, frames = int(want.since or 0), []
            else:
                start, frames = self._ask(lambda p: p.snapshot(adw_ids), (0, []))
            if explicit:
                data = SubscribedData(
                    epoch=epoch,
                    recovered=why is None,
                    resume_from=start,
                    last_seq=last,
                    message=why or f"replaying the events after seq {start}",
                )
                frames.insert(0, encode(Subscribed(data, request_id=request_id)))
            upto = start
            for stored in store.read(start):
                upto = stored.seq
                for target, adw_id, frame in wire_messages(stored):
                    if target is None and (adw_ids is None or adw_id is None or adw_id in adw_ids):
                        frames.append(frame)
                if len(frames) >= CATCH_UP_CHUNK:
                    self._outbox.catch_up(frames)
                    frames = []
            self._outbox.catch_up(frames)
        finally:
            store.close()
        self._outbox.resume(upto, follows=adw_ids)

    def _unknown_workflow(self, workflow_type: str) -> ProtocolError:
        allowed = sorted(self._workflow_types)
        return ProtocolError(
            ErrorCode.VALIDATION_ERROR,
            f"Unknown workflow_type {workflow_type!r}. Use one of: {', '.join(allowed)}.",
            {"field": "data.workflow_type", "allowed": allowed},
        )

    def _on_invalid(self, frame: bytes | str, problem: ProtocolError) -> None:
        """Tell the client what was wrong; a malformed trigger also gets its one
        trigger_response, through the log like every other trigger outcome."""
        try:
            peek = _peek.decode(frame)
        except msgspec.DecodeError:
            peek = _Peek()
        rid = peek.request_id
        request_id = rid if isinstance(rid, str) and 0 < len(rid) <= 64 else None
        data = ErrorData(message=problem.message, code=problem.code, details=problem.details)
        self._send(encode(Error(data, request_id=request_id)))
        if peek.type != "trigger_workflow":
            return
        data = peek.data if isinstance(peek.data, dict) else {}
        rejected = TriggerRejected(
            error=problem.code,
            message=problem.message,
            adw_id=_echo(data.get("adw_id"), ADW_ID_PATTERN),
            workflow_type=_echo(data.get("workflow_type"), WORKFLOW_TYPE_PATTERN),
            details=problem.details,
            connection_id=self._id,
            request_id=request_id,
        )
        # Through the scheduler, so this connection's trigger_responses keep its order.
        self._scheduler.tell(Reject(rejected, self._id, self._principal))


def _unrecoverable(want: SubscribeData, epoch: str, last: int, first: int) -> str | None:
    """Why the events after ``want.since`` cannot be replayed, or None if they can."""
    if want.since is None:
        return "no since given: sending the current state"
    if want.epoch is not None and want.epoch != epoch:
        return (
            f"the log was restored or replaced (epoch {want.epoch} is now {epoch}): "
            "sending the current state instead of the missed events"
        )
    if want.since > last:
        return (
            f"seq {want.since} is beyond this log's last seq {last}: "
            "sending the current state instead of the missed events"
        )
    if first > 1 and want.since < first - 1:
        return (
            f"the log no longer holds the events after seq {want.since}: "
            "sending the current state instead"
        )
    return None


def _echo(value: object, pattern: str) -> str:
    """A client value safe to echo back, or '' (never reflect what failed validation)."""
    return value if isinstance(value, str) and re.fullmatch(pattern, value) else ""
