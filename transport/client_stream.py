"""The inbound half of :class:`transport.client.AdwdClient`: errors, where the
client stands in the event stream, and the bounded queues of its iterators.

Kept apart from the connection handling so each piece can be tested alone.
See docs/client.md for the behaviour these implement.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Callable
from typing import Any

from events.wire import (
    CancelResponse,
    ErrorData,
    ServerMessage,
    SubscribedData,
    TriggerResponse,
    TriggerResponseData,
)

# --------------------------------------------------------------------------
# Errors


class ClientError(Exception):
    """Base of every error the client raises."""


class ConnectFailed(ClientError, ConnectionError):
    """The first connection could not be opened (server down, wrong URL...)."""


class ClientClosed(ClientError):
    """The client was closed: pending commands and ``follow()`` end with this."""


class RequestTimeout(ClientError, TimeoutError):
    """No reply within ``request_timeout_s`` (offline time included)."""


class TriggerRejected(ClientError):
    """The service rejected a trigger; ``data`` is its ``trigger_response``."""

    def __init__(self, data: TriggerResponseData) -> None:
        super().__init__(f"trigger rejected ({data.error}): {data.message}")
        self.data = data


class ServerError(ClientError):
    """The service answered a command with an ``error``; ``data`` holds it."""

    def __init__(self, data: ErrorData) -> None:
        super().__init__(f"{data.code}: {data.message}")
        self.data = data

    @property
    def code(self) -> str | None:
        """The stable error code (docs/protocol.md §5)."""
        return self.data.code


class SlowConsumer(ClientError):
    """An iterator's queue filled up: its consumer read too slowly, so the
    iterator stopped receiving. ``last_seq`` is the seq of the last stream
    message it holds; follow again with ``since=last_seq`` to continue."""

    def __init__(self, size: int, last_seq: int | None) -> None:
        super().__init__(
            f"iterator queue full ({size} messages): the consumer is too slow; "
            f"follow again from seq {last_seq}"
        )
        self.last_seq = last_seq


# --------------------------------------------------------------------------
# Where the client stands in the event stream


def is_stream(message: ServerMessage) -> bool:
    """Event-derived and sent to every follower (not a reply): the messages
    that have a ``seq``, other than ``trigger_response`` and ``cancel_response``."""
    if isinstance(message, TriggerResponse | CancelResponse):
        return False
    return getattr(message, "seq", None) is not None


def _tag(message: ServerMessage) -> str:
    return str(message.__struct_config__.tag)


def stream_key(message: ServerMessage) -> tuple[str, str | None, str | None]:
    """Tells apart the messages that share one seq (status_update, workflow_metrics)."""
    data = getattr(message, "data", None)
    return (_tag(message), getattr(data, "adw_id", None), getattr(data, "workflow_name", None))


class Verdict(enum.Enum):
    """What to do with a stream message."""

    NEW = "new"  # deliver
    STATE = "state"  # deliver: part of a current-state snapshot (seq not comparable)
    DROP = "drop"  # already delivered, or a snapshot about to be repeated


class Position:
    """The resume point, and which stream messages are new.

    ``last_seq`` is the highest seq received. Several messages can share it, and
    a connection can drop between them, so the next connection resumes from
    ``resume_seq``: the seq *before* it, the last one known to be complete. The
    messages of the boundary seq are then received again, and those already
    delivered are dropped by ``(type, adw_id, workflow_name)``.
    """

    def __init__(self) -> None:
        self.epoch: str | None = None
        self.last_seq = 0
        self.resume_seq: int | None = None  # None: no subscribed yet, nothing to resume
        self._boundary: set[tuple[str, str | None, str | None]] = set()
        self._state_upto: int | None = None
        self._subscribed = False

    def opened(self) -> None:
        """A new connection: nothing of it is trusted until its ``subscribed``."""
        self._subscribed = False
        self._state_upto = None

    def subscribed(self, data: SubscribedData) -> None:
        """The connection's catch-up starts."""
        self.epoch = data.epoch
        self._subscribed = True
        if data.recovered:
            return
        # The current state follows (seq <= resume_from), then events after it.
        self._state_upto = data.resume_from
        self.last_seq = self.resume_seq = data.resume_from
        self._boundary = set()

    def accept(self, message: ServerMessage) -> Verdict:
        """Judge one stream message of the current connection."""
        if not self._subscribed:
            return Verdict.DROP  # a plain connect's state: repeated after subscribed
        seq: int = getattr(message, "seq", 0)
        if self._state_upto is not None:
            if seq <= self._state_upto:
                return Verdict.STATE
            self._state_upto = None
        key = stream_key(message)
        if seq > self.last_seq:
            self.resume_seq, self.last_seq = self.last_seq, seq
            self._boundary = {key}
            return Verdict.NEW
        if seq == self.last_seq and key not in self._boundary:
            self._boundary.add(key)
            return Verdict.NEW
        return Verdict.DROP


# --------------------------------------------------------------------------
# Iterator queues

Item = tuple[ServerMessage, bool]  # (message, part of a current-state snapshot)
_END: Any = object()


class Feed:
    """A bounded queue between the reader task and one iterator.

    The reader never waits for a consumer: if the queue is full, the feed stops
    receiving and its consumer gets :class:`SlowConsumer` once it has read what
    the queue holds.
    """

    def __init__(self, match: Callable[[ServerMessage], bool], size: int) -> None:
        self.match = match
        self.size = size
        self._queue: asyncio.Queue[Any] = asyncio.Queue(size)
        self._done = False
        self._error: BaseException | None = None
        self._last_seq: int | None = None

    @property
    def done(self) -> bool:
        """True once nothing more will be put."""
        return self._done

    def put(self, item: Item) -> bool:
        """Queue a message; False if the feed is (now) finished."""
        if self._done:
            return False
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.finish(SlowConsumer(self.size, self._last_seq))
            return False
        seq = getattr(item[0], "seq", None)
        if seq is not None and is_stream(item[0]):
            self._last_seq = seq
        return True

    def finish(self, error: BaseException | None = None) -> None:
        """No more items: the consumer ends (with ``error``, if given) after the rest."""
        if self._done:
            return
        self._done, self._error = True, error
        with contextlib.suppress(asyncio.QueueFull):  # full: get() sees _done when empty
            self._queue.put_nowait(_END)

    async def get(self) -> Item | None:
        """The next item; None at the end; raises the error the feed finished with."""
        if self._done and self._queue.empty():
            return self._end()
        item = await self._queue.get()
        if item is _END:
            return self._end()
        return item  # type: ignore[no-any-return]

    def _end(self) -> None:
        if self._error is not None:
            raise self._error
