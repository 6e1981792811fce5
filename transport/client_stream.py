"""The inbound half of :class:`transport.client.AdwdClient`: errors, where the
client stands in the event stream, and the bounded queues of its iterators.

Kept apart from the connection handling so each piece can be tested alone.
See docs/client.md for the behaviour these implement.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import urllib.parse
import weakref
from collections.abc import Callable

from adwd.events.errors import AdwdError, ErrorCode
from adwd.events.wire import (
    CancelResponse,
    ErrorData,
    ServerMessage,
    StatusUpdate,
    SubscribedData,
    TriggerResponse,
    TriggerResponseData,
    WorkflowMetrics,
)

# --------------------------------------------------------------------------
# Errors


class ClientError(AdwdError):
    """Base of every error the client raises (part of adwd's one exception tree)."""


class ConnectFailed(ClientError, ConnectionError):
    """The first connection could not be opened (server down, wrong URL...)."""


class ClientClosed(ClientError):
    """The client was closed: pending commands and ``follow()`` end with this."""


class AuthenticationRequired(ClientError):
    """The service asks for authentication this client cannot give: pass a
    ``token`` (docs/security.md). Pending commands and ``follow()`` end with it."""


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
    def code(self) -> ErrorCode | None:
        """The stable error code (docs/protocol.md §5): branch on this, not the text."""
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


def resume_url(url: str, since: int | None, epoch: str | None) -> str:
    """``url`` with ``?since=&epoch=`` set (unchanged while there is nothing to resume)."""
    if since is None:
        return url
    parts = urllib.parse.urlsplit(url)
    query = [
        (k, v)
        for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if k not in ("since", "epoch")
    ]
    query.append(("since", str(since)))
    if epoch is not None:
        query.append(("epoch", epoch))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


# --------------------------------------------------------------------------
# Iterators

Item = tuple[ServerMessage, bool]  # (message, part of a current-state snapshot)
_TERMINAL = ("completed", "failed")


class _End:
    """The end marker a finished feed puts on its queue."""


_END = _End()


class Feed:
    """A bounded queue between the reader task and one iterator.

    The reader never waits for a consumer: if the queue is full, the feed stops
    receiving and its consumer gets :class:`SlowConsumer` once it has read what
    the queue holds.
    """

    def __init__(
        self,
        match: Callable[[ServerMessage], bool],
        size: int,
        on_close: BaseException | None = None,
    ) -> None:
        self.match = match
        self.size = size
        self.on_close = on_close  # what the consumer gets if the client closes first
        self._queue: asyncio.Queue[Item | _End] = asyncio.Queue(size)
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
            self._end()
            return None
        item = await self._queue.get()
        if isinstance(item, _End):
            self._end()
            return None
        return item

    def _end(self) -> None:
        if self._error is not None:
            raise self._error


def run_matcher(adw_id: str, workflow_type: str | None) -> Callable[[ServerMessage], bool]:
    """Stream messages of ``adw_id`` (and of ``workflow_type``, if given)."""

    def match(message: ServerMessage) -> bool:
        data = getattr(message, "data", None)
        return (
            is_stream(message)
            and getattr(data, "adw_id", None) == adw_id
            and (workflow_type is None or getattr(data, "workflow_name", "") == workflow_type)
        )

    return match


class Stream:
    """The async iterator over one feed that ``messages()`` and ``follow()`` return.

    Cancelling a pending ``__anext__`` (``asyncio.wait_for`` timing out) loses no
    message and leaves the iterator usable. An iterator that is dropped, closed
    or finished stops receiving. With ``run=True`` it ends after a run's final
    ``status_update`` and the final ``workflow_metrics`` of the same seq (or
    right after the update, if it came in a snapshot).
    """

    def __init__(self, feed: Feed, release: Callable[[Feed], None], *, run: bool) -> None:
        self._feed = feed
        self._run = run
        self._ending: tuple[int | None, str] | None = None  # the final update's seq, workflow
        self._over = False
        self._release = weakref.finalize(self, release, feed)
        self._release.atexit = False

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> ServerMessage:
        if self._over:
            raise StopAsyncIteration
        try:
            item = await self._feed.get()
        except ClientError:
            self._stop()
            raise
        if item is None:
            self._stop()
            raise StopAsyncIteration
        message, state = item
        if self._run and self._is_last(message, state):
            self._stop()
        return message

    async def aclose(self) -> None:
        """Stop receiving."""
        self._stop()

    def _stop(self) -> None:
        self._over = True
        self._release()

    def _is_last(self, message: ServerMessage, state: bool) -> bool:
        if isinstance(message, StatusUpdate) and message.data.status in _TERMINAL:
            if state:  # from a snapshot: its workflow_metrics never come
                return True
            self._ending = (message.seq, message.data.workflow_name)
            return False
        return (
            self._ending is not None
            and isinstance(message, WorkflowMetrics)
            and message.data.phase == "final"
            and (message.seq, message.data.workflow_name) == self._ending
        )
