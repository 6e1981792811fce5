"""ConnectionActor: the one place every inbound message of a connection passes.

It decodes and validates each frame, and owns the connection's principal:
authentication, permissions and rate limits belong here and nowhere else.
Replies that are not derived from events (pong, error) go straight back
through ``send``; everything else becomes a command to the scheduler.
"""

from __future__ import annotations

import re
import time
from typing import Any

import msgspec
import pykka

from actors.messages import Cancel, Inbound, Reject, Send, Trigger
from events.codec import decode_client, encode
from events.domain import TriggerRejected
from events.errors import ErrorCode, ProtocolError
from events.wire import (
    ADW_ID_PATTERN,
    WORKFLOW_TYPE_PATTERN,
    CancelWorkflow,
    Error,
    ErrorData,
    Ping,
    Pong,
    TriggerWorkflow,
)


class _Peek(msgspec.Struct):
    """Just enough of a frame to tell what it tried to be."""

    type: Any = None
    data: Any = None


_peek = msgspec.json.Decoder(_Peek)


class ConnectionActor(pykka.ThreadingActor):
    """Decodes, validates and dispatches the frames of one connection."""

    def __init__(
        self,
        *,
        connection_id: str,
        send: Send,
        scheduler: pykka.ActorRef[pykka.Actor],
        workflow_types: frozenset[str],
        principal: str = "anonymous",
    ) -> None:
        super().__init__()
        self._id = connection_id
        self._send = send
        self._scheduler = scheduler
        self._principal = principal
        self._workflow_types = workflow_types

    def on_receive(self, message: object) -> object:
        """Handle one inbound frame."""
        if isinstance(message, Inbound):
            self._on_frame(message.frame)
        return None

    def _on_frame(self, frame: bytes | str) -> None:
        try:
            msg = decode_client(frame)
        except ProtocolError as problem:
            self._on_invalid(frame, problem)
            return
        if isinstance(msg, Ping):
            self._send(encode(Pong(timestamp=int(time.time() * 1000))))
        elif isinstance(msg, TriggerWorkflow):
            if msg.data.workflow_type not in self._workflow_types:
                self._on_invalid(frame, self._unknown_workflow(msg.data.workflow_type))
                return
            self._scheduler.tell(Trigger(msg.data, self._id, self._principal))
        elif isinstance(msg, CancelWorkflow):
            self._scheduler.tell(Cancel(msg.data, self._id, self._principal, self._send))

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
        self._send(
            encode(
                Error(
                    ErrorData(message=problem.message, code=problem.code, details=problem.details)
                )
            )
        )
        try:
            peek = _peek.decode(frame)
        except msgspec.DecodeError:
            return
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
        )
        # Through the scheduler, so this connection's trigger_responses keep its order.
        self._scheduler.tell(Reject(rejected, self._id, self._principal))


def _echo(value: object, pattern: str) -> str:
    """A client value safe to echo back, or '' (never reflect what failed validation)."""
    return value if isinstance(value, str) and re.fullmatch(pattern, value) else ""
