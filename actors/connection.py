"""ConnectionActor: one per WebSocket connection, the one place its inbound messages pass.

It decodes and validates each frame, and owns the connection's principal:
authentication, permissions and rate limits belong here and nowhere else.
Replies that are not derived from events (pong, error) go straight back
through the outbox; everything else becomes a command to another actor,
always by ``tell``: the actor shares its thread with thousands of others
(actors/dispatch.py), so it never waits for an answer.

Supervision: a handler that raises ends this connection and nothing else.
The client gets an ``error`` (``internal``) and a 1011 close, the failure
is recorded as an ``actor_failed`` event, and the client may reconnect and
resume at once.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any

import pykka
from msgspec import Struct

from adwd.actors import guard as sec
from adwd.actors.auth import ANY_TYPE
from adwd.actors.base import InjectedFault
from adwd.actors.board import SESSIONS, restart_of
from adwd.actors.dispatch import DispatchedActor, Dispatcher
from adwd.actors.messages import (
    Append,
    Cancel,
    CardMove,
    Inbound,
    Outbox,
    QueueStatusAsked,
    Recovery,
    Reject,
    Trigger,
)
from adwd.actors.telemetry import Telemetry
from adwd.events.codec import decode_client, encode, peek
from adwd.events.domain import (
    ActorFailed,
    RunLogged,
    TriggerRejected,
    connection_stream,
    workflow_stream,
)
from adwd.events.errors import ErrorCode, ProtocolError
from adwd.events.store import NewEvent
from adwd.events.wire import (
    ADW_ID_PATTERN,
    WORKFLOW_TYPE_PATTERN,
    Authenticate,
    CancelWorkflow,
    CardMoved,
    ClientAuthChallenge,
    ClientMessage,
    ClientWorkflowLog,
    Error,
    ErrorData,
    GetQueueStatus,
    Ping,
    Pong,
    Recover,
    RegisterSession,
    SessionRegistered,
    SessionRegisteredData,
    Subscribe,
    SubscribeData,
    TerminateWorkflow,
    TicketNotification,
    TicketNotificationResponse,
    TicketNotificationResponseData,
    TriggerWorkflow,
)

log = logging.getLogger(__name__)

Reply = Callable[[list[bytes]], None]
FAULT_PREFIX = "adwd-fault:"  # ping request_ids that inject faults (fault_injection only)


class _Replied(Struct, frozen=True):
    """ConnectionActor (to itself): the frames answering its pending ask."""

    frames: list[bytes]


class _Fire(Struct, frozen=True):
    """ConnectionActor (to itself, from the loop): a security timer fired."""

    kind: sec.TimerKind
    generation: int


class _Within(Struct, frozen=True):
    """ConnectionActor (to itself, from the loop): is a scoped cancel's run in scope?"""

    cancel: CancelWorkflow | TerminateWorkflow
    allowed: bool


class ConnectionActor(DispatchedActor):
    """Decodes, validates and dispatches the frames of one connection, in order."""

    def __init__(
        self,
        *,
        dispatcher: Dispatcher,
        connection_id: str,
        outbox: Outbox,
        since: int | None,
        epoch: str | None,
        scheduler: pykka.ActorRef[pykka.Actor],
        projector: pykka.ActorRef[pykka.Actor],
        event_log: pykka.ActorRef[pykka.Actor],
        transport: pykka.ActorRef[pykka.Actor] | None = None,
        workflow_types: frozenset[str],
        fault_injection: bool = False,
        telemetry: Telemetry | None = None,
        guard: sec.Guard | None = None,
    ) -> None:
        super().__init__(dispatcher)
        self._received = telemetry.received if telemetry is not None else None  # /metrics
        self._guard = guard  # None: security off, today's behaviour exactly
        self._closed = False  # the guard closed the connection: ignore what follows
        self._cid = connection_id
        self._outbox = outbox
        self._since, self._epoch = since, epoch
        self._scheduler = scheduler
        self._projector = projector
        self._event_log = event_log
        self._workflow_types = workflow_types
        self._faults = fault_injection
        self._transport = transport
        self._principal = "anonymous"
        self._extra = {"connection": connection_id}  # for log records
        self._awaiting = False  # an ask of this connection is unanswered
        self._stash: deque[Inbound] = deque()  # frames that arrived meanwhile

    def on_start(self) -> None:
        """Bring the new connection up to date before it goes live."""
        guard = self._guard
        if guard is not None:
            self._principal = guard.user_id
            if not guard.may_read():  # not authenticated yet, or may not read runs
                self._outbox.open_unread()
                self._apply(guard.start(time.time()))
                return
            guard.reading = True
        want = SubscribeData(since=self._since, epoch=self._epoch)
        self._outbox.catch_up(want, explicit=self._since is not None, request_id=None)
        if guard is not None:
            self._apply(guard.start(time.time()))

    # -- security (issue 13): carry out what the guard decides -----------------

    def _apply(self, effects: list[sec.Effect]) -> None:
        me = self.actor_ref
        for effect in effects:
            match effect:
                case sec.Send(frame=frame):
                    self._outbox.send(frame)
                case sec.Close(code=code, reason=reason):
                    self._closed = True
                    self._outbox.close(code, reason)
                case sec.Audit(event=event, user_id=user_id):
                    new = NewEvent(connection_stream(self._cid), event, principal=user_id)
                    with contextlib.suppress(pykka.ActorDeadError):
                        self._event_log.tell(Append([new]))
                case sec.Timer(kind=kind, delay=delay, generation=generation):
                    fire = _Fire(kind, generation)

                    def tell(fire: _Fire = fire) -> None:
                        with contextlib.suppress(pykka.ActorDeadError):
                            me.tell(fire)

                    self._outbox.later(delay, tell)
                case sec.GrantRead(scope=scope):
                    # The resume the client asked for in its URL, now that it may read.
                    want = SubscribeData(since=self._since, epoch=self._epoch)
                    self._outbox.grant_read(want, explicit=self._since is not None, scope=scope)
                case sec.GrantMonitor():
                    self._outbox.grant_monitor()
                case sec.AuthFailure():
                    self._outbox.auth_failed()
        if self._guard is not None:
            self._principal = self._guard.user_id

    def _guarded(self, msg: object, frame: bytes | str) -> bool:
        """True if the guard lets ``msg`` through (security off: always)."""
        guard = self._guard
        if guard is None:
            return True
        now = time.time()
        if isinstance(msg, Authenticate | ClientAuthChallenge):
            self._apply(guard.authenticate(msg, now))
            return False
        tried = peek(frame)
        workflow_type = msg.data.workflow_type if isinstance(msg, TriggerWorkflow) else None
        if isinstance(msg, Recover | CardMoved | TicketNotification | ClientWorkflowLog):
            workflow_type = ANY_TYPE
        rid = tried.request_id if isinstance(tried.request_id, str) else None
        admitted, effects = guard.admit(str(tried.type), workflow_type, rid, now)
        self._apply(effects)
        return admitted

    def on_receive(self, message: object) -> object:
        """The connection's frames, in the order they arrived, and replies to it."""
        if isinstance(message, _Fire):
            if self._guard is not None and not self._closed:
                self._apply(self._guard.timer(message.kind, message.generation, time.time()))
        elif isinstance(message, Inbound):
            if self._closed:
                pass  # the guard closed this connection; its last frames are dropped
            elif self._awaiting:
                self._stash.append(message)
            else:
                self._on_inbound(message)
        elif isinstance(message, _Replied | _Within):
            if isinstance(message, _Within):
                self._cancel_checked(message.cancel, message.allowed)
            else:
                for frame in message.frames:
                    self._outbox.send(frame)
            self._awaiting = False
            while self._stash and not self._awaiting:
                self._on_inbound(self._stash.popleft())
        return None

    def _on_inbound(self, message: Inbound) -> None:
        try:
            subscribed = self._on_frame(message.frame)
        except pykka.ActorDeadError:
            # A core actor is gone: the service is stopping (its supervisor says
            # why to every client). Not this connection's failure.
            subscribed = False
            error = ErrorData(
                message="adwd is stopping and cannot take this message; reconnect once "
                "it is back and send it again.",
                code=ErrorCode.UNAVAILABLE,
            )
            self._outbox.send(encode(Error(error)))
        if message.paused and not subscribed:
            self._outbox.resume(0)  # it was not a subscribe after all

    def _ask(self, actor: pykka.ActorRef[pykka.Actor], build: Callable[[Reply], object]) -> None:
        """Ask without waiting: the answer comes back as a message to this actor,
        and the frames that arrive meanwhile wait in a stash, so every reply to
        this connection still goes out in the order of its requests."""
        me = self.actor_ref

        def reply(frames: list[bytes]) -> None:
            with contextlib.suppress(pykka.ActorDeadError):  # the connection closed
                me.tell(_Replied(frames))

        self._awaiting = True
        try:
            actor.tell(build(reply))
        except pykka.ActorDeadError:  # shutting down: nothing to answer with
            self._awaiting = False

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Supervision: end this connection (1011), record it, touch nothing else.

        pykka has already logged the traceback, once, and stopped this actor.
        """
        name = exception_type.__name__ if exception_type else "unknown"
        error = ErrorData(
            message="adwd failed while handling this connection's message; the connection "
            "is closed. Reconnect and resume from your last seq.",
            code=ErrorCode.INTERNAL,
            details={"exception": name},
        )
        self._outbox.fail(encode(Error(error)))
        failed = ActorFailed(
            actor="connection",
            exception=name,
            connection_id=self._cid,
            action="connection closed with 1011",
        )
        try:
            self._event_log.tell(Append([NewEvent(connection_stream(self._cid), failed)]))
        except pykka.ActorDeadError:  # the service is stopping anyway
            log.warning(
                "actor_failed of connection %s not recorded: the event log is gone", self._cid
            )

    def _on_frame(self, frame: bytes | str) -> bool:
        """Handle a frame; True if it was a subscribe (whose catch-up resumes delivery)."""
        msg = self._decoded(frame)
        if msg is None or not self._guarded(msg, frame):
            return False
        send = self._outbox.send
        if isinstance(msg, Ping):
            request_id = msg.request_id or ""
            if self._faults and request_id.startswith(FAULT_PREFIX):
                self._inject(request_id[len(FAULT_PREFIX) :])
            send(encode(Pong(timestamp=int(time.time() * 1000), request_id=msg.request_id)))
        elif isinstance(msg, TriggerWorkflow):
            if msg.data.workflow_type not in self._workflow_types:
                self._on_invalid(frame, self._unknown_workflow(msg.data.workflow_type))
            else:
                self._scheduler.tell(Trigger(msg.data, self._cid, self._principal, msg.request_id))
        elif isinstance(msg, CancelWorkflow | TerminateWorkflow):
            self._cancel(msg)
        elif isinstance(msg, Recover | CardMoved):
            self._scheduler.tell(self._command(msg))
        elif isinstance(msg, Subscribe):
            self._outbox.catch_up(msg.data, explicit=True, request_id=msg.request_id)
            return True
        elif isinstance(msg, GetQueueStatus):
            rid = msg.request_id
            self._ask(self._projector, lambda reply: QueueStatusAsked(self._cid, rid, reply))
        elif isinstance(msg, RegisterSession | TicketNotification | ClientWorkflowLog):
            self._on_board(msg)
        return False

    def _decoded(self, frame: bytes | str) -> ClientMessage | None:
        """The frame as a message (counted for /metrics), or None once answered as invalid."""
        try:
            msg = decode_client(frame)
        except ProtocolError as problem:
            if self._received is not None:
                self._received("invalid")
            self._on_invalid(frame, problem)
            return None
        if self._received is not None:
            self._received(str(msg.__struct_config__.tag))
        return msg

    def _cancel(self, msg: CancelWorkflow | TerminateWorkflow) -> None:
        """A cancel or terminate; a scoped principal's only for runs within its grant."""
        scope = self._guard.scope() if self._guard is not None else None
        if scope is None:
            self._scheduler.tell(self._command(msg))
            return
        # Is the run within the grant? The router knows; the answer comes back as a message.
        self._awaiting = True
        me = self.actor_ref

        def answer(allowed: bool) -> None:
            with contextlib.suppress(pykka.ActorDeadError):
                me.tell(_Within(msg, allowed))

        self._outbox.within(msg.data.adw_id, scope, answer)

    def _command(self, msg: CancelWorkflow | TerminateWorkflow | Recover | CardMoved) -> object:
        """The scheduler's message for a command about runs."""
        send, cid, who, rid = self._outbox.send, self._cid, self._principal, msg.request_id
        if isinstance(msg, Recover):
            return Recovery(msg.data, cid, who, send, rid)
        if isinstance(msg, CardMoved):
            return CardMove(msg.data, cid, who, rid)
        return Cancel(msg.data, cid, who, send, rid, force=isinstance(msg, TerminateWorkflow))

    def _on_board(self, msg: RegisterSession | TicketNotification | ClientWorkflowLog) -> None:
        """The Kanban board's own messages (actors/board.py)."""
        if isinstance(msg, RegisterSession):
            count = SESSIONS.register(msg.data.session_id, self._cid)
            data = SessionRegisteredData(
                session_id=msg.data.session_id,
                message="Session registered successfully",
                connections=count,
            )
            self._outbox.send(encode(SessionRegistered(data, request_id=msg.request_id)))
        elif isinstance(msg, TicketNotification):
            self._on_ticket(msg)
        else:
            line = msg.data
            logged = RunLogged(
                adw_id=line.adw_id,
                workflow_type=line.workflow_name,
                level=line.level,
                message=line.message,
            )
            stream = workflow_stream(line.adw_id)
            self._event_log.tell(Append([NewEvent(stream, logged, self._principal, self._cid)]))

    def _on_ticket(self, msg: TicketNotification) -> None:
        """Answer a ticket notification; on a restart, first end the card's previous
        run and remove its work (its answer waits, as later replies do behind it)."""
        ticket, rid = msg.data, msg.request_id
        old = restart_of(ticket)
        text = f"Ticket notification '{ticket.title}' received successfully"

        def frame(note: str, error: str | None = None) -> bytes:
            reply = TicketNotificationResponseData(
                status="received",
                ticket_id=str(ticket.id),
                message=text + note,
                timestamp=_now_iso(),
                error=error,
                cleaned_up=old,
            )
            return encode(TicketNotificationResponse(reply, request_id=rid))

        if old is None:
            self._outbox.send(frame(""))
            return
        me = self.actor_ref

        def done(result: dict[str, Any]) -> None:
            if result.get("success"):
                note = f" (restart: {old}'s runs cancelled and its work removed)"
                answer = frame(note)
            elif result.get("error") == ErrorCode.NOT_FOUND.value:
                answer = frame(f" (restart: {old} had no runs and no work)")
            else:
                answer = frame(f" (restart: cleaning up {old} failed)", str(result)[:500])
            with contextlib.suppress(pykka.ActorDeadError):  # the connection closed
                me.tell(_Replied([answer]))

        self._awaiting = True  # frames that arrive meanwhile wait: replies keep their order
        self._outbox.remove_adw(old, done)

    def on_stop(self) -> None:
        """The connection closed: it leaves its board session."""
        SESSIONS.forget(self._cid)

    def _cancel_checked(self, msg: CancelWorkflow | TerminateWorkflow, allowed: bool) -> None:
        if allowed:
            self._scheduler.tell(self._command(msg))
        elif self._guard is not None:
            self._apply(self._guard.cancel_refused(msg.data.adw_id, msg.request_id))

    def _inject(self, target: str) -> None:
        """Test-only (``fault_injection``): make the named actor raise."""
        kind, _, adw_id = target.partition(":")
        if kind == "connection":
            raise InjectedFault("fault injected into the connection actor")
        if kind == "workflow":
            self._scheduler.proxy().inject_workflow_fault.defer(adw_id)
            return
        refs = {
            "scheduler": self._scheduler,
            "projector": self._projector,
            "event_log": self._event_log,
            "transport": self._transport,
        }
        ref = refs.get(kind)
        if ref is not None:
            ref.proxy().inject_fault.defer()

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
        tried = peek(frame)
        rid = tried.request_id
        request_id = rid if isinstance(rid, str) and 0 < len(rid) <= 64 else None
        data = ErrorData(message=problem.message, code=problem.code, details=problem.details)
        self._outbox.send(encode(Error(data, request_id=request_id)))
        if self._guard is not None:
            self._apply(self._guard.invalid(time.time()))
            if self._guard.principal is None:
                return  # not authenticated: nothing of it reaches the scheduler
        if tried.type != "trigger_workflow":
            return
        data_in = tried.data if isinstance(tried.data, dict) else {}
        rejected = TriggerRejected(
            error=problem.code,
            message=problem.message,
            adw_id=_echo(data_in.get("adw_id"), ADW_ID_PATTERN),
            workflow_type=_echo(data_in.get("workflow_type"), WORKFLOW_TYPE_PATTERN),
            details=problem.details,
            connection_id=self._cid,
            request_id=request_id,
        )
        # Through the scheduler, so this connection's trigger_responses keep its order.
        self._scheduler.tell(Reject(rejected, self._cid, self._principal))


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"


def _echo(value: object, pattern: str) -> str:
    """A client value safe to echo back, or '' (never reflect what failed validation)."""
    return value if isinstance(value, str) and re.fullmatch(pattern, value) else ""
