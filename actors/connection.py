"""ConnectionActor: the one place every inbound message of a connection passes.

It decodes and validates each frame, and owns the connection's principal:
authentication, permissions and rate limits belong here and nowhere else.
Replies that are not derived from events (pong, error) go straight back
through ``send``; everything else becomes a command to the scheduler.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import pykka

from adwd.actors.base import Actor
from adwd.actors.messages import Cancel, Closed, Inbound, Opened, Outbox, Reject, Trigger
from adwd.events.codec import decode_client, encode, peek
from adwd.events.domain import TriggerRejected
from adwd.events.errors import ErrorCode, ProtocolError
from adwd.events.wire import (
    ADW_ID_PATTERN,
    WORKFLOW_TYPE_PATTERN,
    CancelWorkflow,
    Error,
    ErrorData,
    GetQueueStatus,
    Ping,
    Pong,
    Subscribe,
    SubscribeData,
    TriggerWorkflow,
)


@dataclass
class _Session:
    """What a ConnectionActor keeps of one connection."""

    outbox: Outbox
    principal: str = "anonymous"


class ConnectionActor(Actor):
    """Decodes, validates and dispatches the frames of the connections it serves.

    One actor serves many connections (the transport spreads them over a few
    actors): a thread per connection would cost more than the connection
    itself. Each connection's frames still pass through exactly one actor,
    in order, and its principal lives here.
    """

    def __init__(
        self,
        *,
        scheduler: pykka.ActorRef[pykka.Actor],
        projector: pykka.ActorRef[pykka.Actor],
        workflow_types: frozenset[str],
    ) -> None:
        super().__init__()
        self._scheduler = scheduler
        self._projector = projector
        self._workflow_types = workflow_types
        self._sessions: dict[str, _Session] = {}

    def on_receive(self, message: object) -> object:
        """Connections opening and closing, and their frames."""
        if isinstance(message, Inbound):
            session = self._sessions.get(message.connection_id)
            if session is not None:
                subscribed = self._on_frame(message.connection_id, session, message.frame)
                if message.paused and not subscribed:
                    session.outbox.resume(0)  # it was not a subscribe after all
        elif isinstance(message, Opened):
            session = self._sessions[message.connection_id] = _Session(message.outbox)
            # Bring the new connection up to date before it goes live.
            want = SubscribeData(since=message.since, epoch=message.epoch)
            session.outbox.catch_up(want, explicit=message.since is not None, request_id=None)
        elif isinstance(message, Closed):
            self._sessions.pop(message.connection_id, None)
        return None

    def _on_frame(self, cid: str, session: _Session, frame: bytes | str) -> bool:
        """Handle a frame; True if it was a subscribe (whose catch-up resumes delivery)."""
        send = session.outbox.send
        try:
            msg = decode_client(frame)
        except ProtocolError as problem:
            self._on_invalid(cid, session, frame, problem)
            return False
        if isinstance(msg, Ping):
            send(encode(Pong(timestamp=int(time.time() * 1000), request_id=msg.request_id)))
        elif isinstance(msg, TriggerWorkflow):
            if msg.data.workflow_type not in self._workflow_types:
                unknown = self._unknown_workflow(msg.data.workflow_type)
                self._on_invalid(cid, session, frame, unknown)
            else:
                self._scheduler.tell(Trigger(msg.data, cid, session.principal, msg.request_id))
        elif isinstance(msg, CancelWorkflow):
            self._scheduler.tell(Cancel(msg.data, cid, session.principal, send, msg.request_id))
        elif isinstance(msg, Subscribe):
            session.outbox.catch_up(msg.data, explicit=True, request_id=msg.request_id)
            return True
        elif isinstance(msg, GetQueueStatus):
            rid = msg.request_id
            try:
                replies = self._projector.proxy().queue_status_frames(cid, rid).get(timeout=30)
            except (pykka.ActorDeadError, pykka.Timeout):  # shutting down
                replies = []
            for reply in replies:
                send(reply)
        return False

    def _unknown_workflow(self, workflow_type: str) -> ProtocolError:
        allowed = sorted(self._workflow_types)
        return ProtocolError(
            ErrorCode.VALIDATION_ERROR,
            f"Unknown workflow_type {workflow_type!r}. Use one of: {', '.join(allowed)}.",
            {"field": "data.workflow_type", "allowed": allowed},
        )

    def _on_invalid(
        self, cid: str, session: _Session, frame: bytes | str, problem: ProtocolError
    ) -> None:
        """Tell the client what was wrong; a malformed trigger also gets its one
        trigger_response, through the log like every other trigger outcome."""
        tried = peek(frame)
        rid = tried.request_id
        request_id = rid if isinstance(rid, str) and 0 < len(rid) <= 64 else None
        data = ErrorData(message=problem.message, code=problem.code, details=problem.details)
        session.outbox.send(encode(Error(data, request_id=request_id)))
        if tried.type != "trigger_workflow":
            return
        data_in = tried.data if isinstance(tried.data, dict) else {}
        rejected = TriggerRejected(
            error=problem.code,
            message=problem.message,
            adw_id=_echo(data_in.get("adw_id"), ADW_ID_PATTERN),
            workflow_type=_echo(data_in.get("workflow_type"), WORKFLOW_TYPE_PATTERN),
            details=problem.details,
            connection_id=cid,
            request_id=request_id,
        )
        # Through the scheduler, so this connection's trigger_responses keep its order.
        self._scheduler.tell(Reject(rejected, cid, session.principal))


def _echo(value: object, pattern: str) -> str:
    """A client value safe to echo back, or '' (never reflect what failed validation)."""
    return value if isinstance(value, str) and re.fullmatch(pattern, value) else ""
