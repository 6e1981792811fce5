"""The outbound half of :class:`transport.client.AdwdClient`: the commands
issued and not yet answered, in the order they were issued, and the matching
of replies to them by ``request_id``.

A command stays here until its reply arrives (or its caller gives up), so a
new connection can send again whatever the last one did not get answered,
with the same ``request_id``. See docs/client.md.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

from adwd.events.errors import ErrorCode
from adwd.events.wire import (
    CancelResponse,
    Error,
    Pong,
    QueueStatus,
    QueueStatusData,
    ServerMessage,
    TriggerResponse,
)
from adwd.transport.client_stream import ServerError, TriggerRejected

REMEMBERED_TRIGGERS = 10_000  # adw_ids whose trigger follow() can start from

CommandKind = Literal["trigger", "cancel", "ping", "queue_status"]

# Errors that come *before* the reply that settles the command: wait for that.
_FORERUNNERS: frozenset[tuple[CommandKind, ErrorCode]] = frozenset(
    {("trigger", ErrorCode.VALIDATION_ERROR), ("cancel", ErrorCode.NOT_FOUND)}
)


@dataclass
class Command:
    """One command until its reply arrives."""

    request_id: str
    kind: CommandKind
    frames: list[bytes]
    future: asyncio.Future[Any]
    issued_seq: int  # the client's last_seq when issued: the run's messages come later
    generation: int = 0  # the connection it was last sent on (0: never sent)
    sent_at: float = 0.0
    replies: list[QueueStatusData] = field(default_factory=list)


class CommandQueue:
    """Unanswered commands in issue order, and what the answered triggers started."""

    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}  # insertion order: issue order
        self._triggered: OrderedDict[str, tuple[int, str]] = OrderedDict()

    def add(self, command: Command) -> None:
        """Issue a command: it goes out on the current or the next connection."""
        self._commands[command.request_id] = command

    def discard(self, request_id: str) -> None:
        """Forget a command (answered, timed out or abandoned): never sent again."""
        self._commands.pop(request_id, None)

    def unsent(self, generation: int) -> list[Command]:
        """The commands not yet sent on connection ``generation``, in issue order."""
        return [
            c for c in self._commands.values() if c.generation != generation and not c.future.done()
        ]

    def is_pending(self, command: Command) -> bool:
        """True while ``command`` still waits for its reply."""
        return self._commands.get(command.request_id) is command and not command.future.done()

    def fail_all(self, error: BaseException) -> None:
        """End every pending command with ``error``."""
        for command in self._commands.values():
            if not command.future.done():
                command.future.set_exception(error)
        self._commands.clear()

    def triggered(self, adw_id: str) -> tuple[int, str] | None:
        """After which seq, and for which workflow, this client's last accepted
        trigger of ``adw_id`` gets its messages."""
        return self._triggered.get(adw_id)

    def settle(self, message: ServerMessage, now: float) -> None:
        """Hand a reply to the command whose ``request_id`` it carries."""
        command = self._commands.get(message.request_id or "")
        if command is None or command.future.done():
            return  # a late reply to a command that timed out or was abandoned
        kind, future = command.kind, command.future
        if isinstance(message, Error):
            if (kind, message.data.code) not in _FORERUNNERS:
                future.set_exception(ServerError(message.data))
        elif kind == "trigger" and isinstance(message, TriggerResponse):
            if message.data.status != "accepted":
                future.set_exception(TriggerRejected(message.data))
                return
            self._remember(command, message)
            future.set_result(message.data)
        elif kind == "cancel" and isinstance(message, CancelResponse):
            future.set_result(message.data)
        elif kind == "ping" and isinstance(message, Pong):
            future.set_result(now - command.sent_at)
        elif kind == "queue_status" and isinstance(message, QueueStatus):
            command.replies.append(message.data)
        elif kind == "queue_status" and isinstance(message, Pong):
            future.set_result(list(command.replies))  # the ping behind it marks the end

    def _remember(self, command: Command, response: TriggerResponse) -> None:
        data = response.data
        # A new run's messages all come after its run_queued (the response's seq);
        # a repeat's run may have started before it, but after the trigger was issued.
        # A server without ``outcome`` (older than the field) is taken as a repeat:
        # following from the issue seq can only show more, never miss anything.
        new_run = data.outcome == "queued" and response.seq is not None
        since = max(command.issued_seq, response.seq or 0) if new_run else command.issued_seq
        self._triggered[data.adw_id] = (since, data.workflow_name)
        self._triggered.move_to_end(data.adw_id)
        while len(self._triggered) > REMEMBERED_TRIGGERS:
            self._triggered.popitem(last=False)
