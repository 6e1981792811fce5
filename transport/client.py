"""AdwdClient: an asyncio client of the adwd WebSocket protocol (docs/client.md).

One connection at a time, kept up by one task: it opens the socket (backing off
with full jitter while the service is away), then runs a reader that hands
replies to the futures of pending commands and stream messages to iterators,
a writer that sends pending commands in the order they were issued, and a
heartbeat that drops the socket when the service stops answering.

Every command carries a fresh ``request_id``. Until it is answered it stays
pending, and each new connection sends it again with the same ``request_id``,
so a trigger whose answer was lost is answered again, never run twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import urllib.parse
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from adwd.events.codec import decode_server, encode
from adwd.events.errors import ErrorCode
from adwd.events.wire import (
    AuthChallenge,
    CancelResponseData,
    CancelWorkflow,
    CancelWorkflowData,
    GetQueueStatus,
    ModelSet,
    Ping,
    Pong,
    QueueStatusData,
    ServerMessage,
    Subscribe,
    Subscribed,
    TriggerResponseData,
    TriggerWorkflow,
    TriggerWorkflowData,
)
from adwd.transport.client_queue import Command, CommandKind, CommandQueue
from adwd.transport.client_stream import (
    AuthenticationRequired,
    ClientClosed,
    ClientError,
    ConnectFailed,
    Feed,
    Item,
    Position,
    RequestTimeout,
    ServerError,
    SlowConsumer,
    Stream,
    TriggerRejected,
    Verdict,
    is_stream,
    resume_url,
    run_matcher,
)

__all__ = [
    "AdwdClient",
    "AuthenticationRequired",
    "ClientClosed",
    "ClientError",
    "ConnectFailed",
    "ErrorCode",  # what ServerError.code and TriggerRejected.data.error are
    "RequestTimeout",
    "ServerError",
    "SlowConsumer",
    "TriggerRejected",
]

log = logging.getLogger(__name__)

DEFAULT_URL = "ws://127.0.0.1:8500/ws/trigger"
MAX_FRAME = 1024 * 1024  # the server closes the connection on larger frames
MAX_INBOUND = 16 * 1024 * 1024
_OPEN_ERRORS = (OSError, TimeoutError, WebSocketException)
_closing: set[asyncio.Task[None]] = set()  # closes started from a frame handler


class AdwdClient:
    """An asyncio client of adwd. Use as ``async with AdwdClient(url) as client:``."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        heartbeat_s: float = 15.0,
        pong_timeout_s: float = 10.0,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 10.0,
        request_timeout_s: float | None = 60.0,
        open_timeout_s: float = 10.0,
        queue_size: int = 10_000,
        history_size: int = 1_000,
        token: str | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.netloc:
            raise ValueError(f"Not a WebSocket URL: {url!r}. Use ws://HOST:PORT/ws/trigger.")
        self._url = url
        # A bearer token (docs/security.md), sent at every (re)connect's handshake.
        self._headers = {"Authorization": f"Bearer {token}"} if token else None
        self._heartbeat_s = heartbeat_s
        self._pong_timeout_s = pong_timeout_s
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._request_timeout_s = request_timeout_s
        self._open_timeout_s = open_timeout_s
        self._queue_size = queue_size
        self._pending = CommandQueue()
        self._heartbeats: dict[str, asyncio.Future[None]] = {}
        self._feeds: set[Feed] = set()
        self._position = Position()
        self._history: deque[Item] = deque(maxlen=history_size)
        self._wake = asyncio.Event()
        self._answered = asyncio.Event()  # this connection's subscribe was answered
        self._up = asyncio.Event()
        self._down = asyncio.Event()
        self._down.set()
        self._ws: ClientConnection | None = None
        self._generation = 0
        self._connections = 0
        self._last_rx = 0.0
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # -- state -------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The highest ``seq`` of a stream message received (0: none yet)."""
        return self._position.last_seq

    @property
    def epoch(self) -> str | None:
        """The event log's epoch, from the last ``subscribed`` (None: none yet)."""
        return self._position.epoch

    @property
    def connected(self) -> bool:
        """True while a connection is open."""
        return self._ws is not None

    @property
    def connections(self) -> int:
        """How many connections have been opened so far (1 + reconnects)."""
        return self._connections

    async def wait_connected(self, connected: bool = True) -> None:
        """Wait until a connection is open (or, with ``False``, until none is)."""
        await (self._up if connected else self._down).wait()

    # -- lifecycle ---------------------------------------------------------

    async def __aenter__(self) -> AdwdClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the first connection, once; raise :class:`ConnectFailed` if that
        fails. From then on the client reconnects by itself until :meth:`close`."""
        if self._closed:
            raise ClientClosed("the client is closed; create a new one")
        if self._task is not None:
            return
        try:
            ws = await self._open()
        except _OPEN_ERRORS as exc:
            raise ConnectFailed(f"Cannot connect to {self._url}: {exc}") from exc
        self._task = asyncio.get_running_loop().create_task(self._run(ws), name="adwd-client")

    async def close(self) -> None:
        """Close the connection; pending commands fail with :class:`ClientClosed`,
        ``messages()`` ends and ``follow()`` raises :class:`ClientClosed`."""
        if self._closed:
            return
        self._closed = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._pending.fail_all(ClientClosed("the client was closed"))
        for feed in self._feeds:
            feed.finish(feed.on_close)
        self._feeds.clear()

    # -- commands ----------------------------------------------------------

    async def trigger(
        self,
        workflow_type: str,
        *,
        issue_number: str | int | None = None,
        adw_id: str | None = None,
        model_set: ModelSet = "base",
        trigger_reason: str | None = None,
        **extra: Any,
    ) -> TriggerResponseData:
        """Start or queue a run; the accepted ``trigger_response``. Raises
        :class:`TriggerRejected` (``.data``) if the service rejects it. ``extra``:
        the other fields of ``TriggerWorkflowData`` (issue_type, issue_json, stages, config)."""
        data = TriggerWorkflowData(
            workflow_type=workflow_type,
            adw_id=adw_id,
            issue_number=issue_number,
            model_set=model_set,
            trigger_reason=trigger_reason,
            **extra,
        )
        result: TriggerResponseData = await self._request(
            "trigger", lambda rid: [TriggerWorkflow(data, request_id=rid)]
        )
        return result

    async def cancel(self, adw_id: str, reason: str = "") -> CancelResponseData:
        """Cancel the queued and running runs of ``adw_id``; the ``cancel_response``
        (``status`` ``cancelling`` or ``not_found``)."""
        data = CancelWorkflowData(adw_id=adw_id, reason=reason)
        result: CancelResponseData = await self._request(
            "cancel", lambda rid: [CancelWorkflow(data, request_id=rid)]
        )
        return result

    async def ping(self) -> float:
        """Round trip to the service (not just the socket), in seconds."""
        result: float = await self._request("ping", lambda rid: [Ping(request_id=rid)])
        return result

    async def queue_status(self) -> list[QueueStatusData]:
        """This connection's waiting runs in queue order, or one entry with
        ``position`` 0 (the wait of a run triggered now) if it has none."""
        # The replies are not counted; a ping right behind marks their end.
        result: list[QueueStatusData] = await self._request(
            "queue_status", lambda rid: [GetQueueStatus(request_id=rid), Ping(request_id=rid)]
        )
        return result

    async def _request(self, kind: CommandKind, build: Callable[[str], list[Any]]) -> Any:
        if self._closed:
            raise ClientClosed("the client is closed")
        if self._task is None:
            raise ClientError("not connected: call connect() (or use 'async with') first")
        rid = uuid.uuid4().hex
        frames = [encode(message) for message in build(rid)]
        if any(len(frame) > MAX_FRAME for frame in frames):
            raise ClientError(f"{kind} is over the service's 1 MiB frame limit; trim issue_json")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.add(Command(rid, kind, frames, future, self._position.last_seq))
        self._wake.set()
        try:
            return await asyncio.wait_for(future, self._request_timeout_s)
        except TimeoutError as exc:
            raise RequestTimeout(
                f"no reply to {kind} within {self._request_timeout_s} s "
                f"(request_id {rid}); it may still have been executed"
            ) from exc
        finally:
            self._pending.discard(rid)

    # -- iterators ---------------------------------------------------------

    def messages(self) -> AsyncIterator[ServerMessage]:
        """Every server message from now on, in arrival order; ends at close()."""
        return Stream(self._feed(lambda message: True), self._feeds.discard, run=False)

    def follow(
        self, adw_id: str, *, workflow_type: str | None = None, since: int | None = None
    ) -> AsyncIterator[ServerMessage]:
        """The stream messages of ``adw_id``'s runs (``status_update``,
        ``workflow_metrics``...), ending after a run's final ``status_update`` and
        its final ``workflow_metrics``.

        By default they start after this client's last trigger of ``adw_id``, and
        only that trigger's workflow is followed; without such a trigger, from now
        on. ``since``: start after that seq, from the messages still in the
        history. Raises :class:`ClientClosed` if the client closes first.
        """
        triggered = self._pending.triggered(adw_id)
        if since is None and triggered is not None:
            since = triggered[0]
            workflow_type = workflow_type or triggered[1]

        match = run_matcher(adw_id, workflow_type)
        feed = self._feed(match, on_close=ClientClosed("the client was closed"))
        if since is not None:
            for message, state in self._history:
                if match(message) and getattr(message, "seq", 0) > since:
                    feed.put((message, state))
        return Stream(feed, self._feeds.discard, run=True)

    def _feed(
        self, match: Callable[[ServerMessage], bool], on_close: BaseException | None = None
    ) -> Feed:
        if self._closed:
            raise ClientClosed("the client is closed")
        feed = Feed(match, self._queue_size, on_close)
        self._feeds.add(feed)
        return feed

    # -- the connection ----------------------------------------------------

    async def _open(self) -> ClientConnection:
        return await connect(
            resume_url(self._url, self._position.resume_seq, self._position.epoch),
            open_timeout=self._open_timeout_s,
            close_timeout=self._pong_timeout_s,
            max_size=MAX_INBOUND,
            additional_headers=self._headers,
        )

    async def _run(self, ws: ClientConnection | None) -> None:
        """Serve connections until close(), reconnecting with backoff."""
        attempt = 0
        while not self._closed:
            if ws is not None:
                attempt = 0
                await self._serve(ws)
                ws = None
                continue
            ceiling = min(self._backoff_max_s, self._backoff_initial_s * 2 ** min(attempt, 30))
            attempt += 1
            await asyncio.sleep(random.uniform(0, ceiling))
            try:
                ws = await self._open()
            except _OPEN_ERRORS as exc:
                log.debug("reconnect to %s failed: %s", self._url, exc)

    async def _serve(self, ws: ClientConnection) -> None:
        """One connection: read, write and heartbeat until one of them ends."""
        self._generation += 1
        self._connections += 1
        self._ws = ws
        self._position.opened()
        self._last_rx = asyncio.get_running_loop().time()
        self._down.clear()
        self._up.set()
        tasks = [
            asyncio.create_task(self._read(ws)),
            asyncio.create_task(self._write(ws, self._generation)),
            asyncio.create_task(self._heartbeat(ws)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._ws = None
            self._up.clear()
            self._down.set()
            for task in tasks:
                task.cancel()
            for outcome in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(outcome, Exception) and not isinstance(outcome, ConnectionClosed):
                    log.error("adwd client connection task failed", exc_info=outcome)
            if ws.transport is not None:
                ws.transport.abort()  # a dead peer would not answer a closing handshake

    async def _read(self, ws: ClientConnection) -> None:
        async for frame in ws:
            self._last_rx = asyncio.get_running_loop().time()
            self._on_frame(frame)

    async def _write(self, ws: ClientConnection, generation: int) -> None:
        """Send every pending command not yet sent on this connection, in issue order."""
        if self._position.resume_seq is None:
            # A plain connect: subscribe to learn the epoch and where its state stands,
            # and send commands only once it is answered, so that everything they
            # cause comes after the point this client's stream starts from.
            self._answered.clear()
            await ws.send(encode(Subscribe(request_id=uuid.uuid4().hex)), text=True)
            with contextlib.suppress(TimeoutError):  # a server that never answers
                await asyncio.wait_for(self._answered.wait(), self._pong_timeout_s)
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            for command in self._pending.unsent(generation):
                if not self._pending.is_pending(command):
                    continue  # answered or abandoned while earlier ones were sent
                command.generation, command.sent_at = generation, loop.time()
                command.replies.clear()
                for frame in command.frames:
                    await ws.send(frame, text=True)
            await self._wake.wait()

    async def _heartbeat(self, ws: ClientConnection) -> None:
        """Return when a ping got no pong, and nothing else arrived, within the timeout."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._heartbeat_s)
            rid = f"hb-{uuid.uuid4().hex}"
            pong: asyncio.Future[None] = loop.create_future()
            self._heartbeats[rid] = pong
            sent = loop.time()
            try:
                try:
                    await asyncio.wait_for(
                        ws.send(encode(Ping(request_id=rid)), text=True), self._pong_timeout_s
                    )
                except TimeoutError:
                    return
                while not pong.done():
                    # Any frame proves the service alive (a long catch-up delays pongs).
                    remaining = max(sent, self._last_rx) + self._pong_timeout_s - loop.time()
                    if remaining <= 0:
                        log.info("no pong within %s s: reconnecting", self._pong_timeout_s)
                        return
                    await asyncio.wait([pong], timeout=remaining)
            finally:
                self._heartbeats.pop(rid, None)

    # -- inbound -----------------------------------------------------------

    def _refused(self, reason: str) -> None:
        """The service wants authentication: end every command and iterator with
        AuthenticationRequired, and close (reconnecting would not help)."""
        if reason == "expiring":
            what = "The token is about to expire: create the client again with a fresh token."
        elif self._headers is None:
            what = "The service requires authentication: pass token=... (docs/security.md)."
        else:
            what = "The service did not accept the token: pass a valid one."
        error = AuthenticationRequired(what)
        self._pending.fail_all(error)
        for feed in self._feeds:
            feed.finish(error)
        self._feeds.clear()
        task = asyncio.get_running_loop().create_task(self.close())
        _closing.add(task)
        task.add_done_callback(_closing.discard)

    def _on_frame(self, frame: str | bytes) -> None:
        try:
            message = decode_server(frame)
        except msgspec.DecodeError as exc:  # a message type newer than this client
            log.debug("ignoring a server message: %s", exc)
            return
        if isinstance(message, AuthChallenge):
            # Sent only to a connection that did not authenticate at the handshake
            # (and before a token expires): this client authenticates only there.
            self._refused(message.data.reason)
            return
        if isinstance(message, Pong) and (message.request_id or "").startswith("hb-"):
            pong = self._heartbeats.get(message.request_id or "")
            if pong is not None and not pong.done():
                pong.set_result(None)
            return  # the heartbeat's own: not shown to messages()
        state = False
        if isinstance(message, Subscribed):
            self._position.subscribed(message.data)
            self._answered.set()
        elif is_stream(message):
            verdict = self._position.accept(message)
            if verdict is Verdict.DROP:
                return
            state = verdict is Verdict.STATE
            self._history.append((message, state))
        elif message.request_id is not None:
            self._pending.settle(message, asyncio.get_running_loop().time())
        for feed in list(self._feeds):
            if feed.match(message) and not feed.put((message, state)):
                self._feeds.discard(feed)
