"""The router: committed events to wire messages, fanned out on the loop.

Runs on the transport's asyncio thread (the EventLogActor hands it each
committed batch with ``call_soon_threadsafe``). Each message is encoded once
and written to every follower from here, as ``websockets.broadcast`` does;
routing it through per-connection actors would cost a thread hand-off per
delivery (ARCHITECTURE.md, measured facts).

A connection starts *paused*: live messages for it are buffered while its
ConnectionActor sends it the state or the history it missed, then the
buffer is flushed without what that catch-up already covered (seq <=
``upto``). Pauses nest: a subscribe that arrives during the first catch-up
pauses again, and live delivery starts only when both are done. So a client
sees every event once, in order, with no gap at the
seam between catch-up and live.

Frames go out in one socket write per connection per hand-off (a committed
batch, a round of queue_status, a flushed pause buffer): on this
multi-threaded process each write gives up the GIL and waits to win it back,
so the number of writes, not of frames, is what the loop pays for.

Writes follow asyncio's flow control: a connection's transport is written
to only while its buffer is under its high-water mark (websockets'
``write_limit``, 32 KiB), at most 64 KiB a write. Frames that do not fit
wait, encoded but not yet framed, in the connection's *backlog*; the next
hand-off, or a flusher woken by websockets' ``drain()`` (asyncio's
``resume_writing``), writes them on, in order and in whole frames. A client
that keeps up has no backlog: one write per hand-off (of up to 64 KiB).

Every connection's outbound data is bounded: a client whose unsent bytes
(transport buffer and backlog, or pause buffer) exceed ``max_outbound_bytes``
is closed with 1013 (try again later). Its backlog is discarded, never
written, so the close frame goes right behind the little the transport
holds, and a client that reads at all gets it; one that reads nothing is cut
after websockets' close timeout. It can reconnect and resume; the log still
holds everything it missed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Collection, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from adwd.actors.auth import Permission, Principal, sees, within
from adwd.actors.delivery import Delivery
from adwd.actors.owners import RunOwners
from adwd.actors.wireview import wire_messages
from adwd.events.domain import RunQueued
from adwd.events.errors import CloseCode
from adwd.events.store import StoredEvent

log = logging.getLogger(__name__)

SLOW_REASON = "too slow to keep up; reconnect and subscribe from your last seq"
WRITE_HIGH = 2**15  # websockets' default write_limit: for a transport that gives none
CHUNK = 2**16  # most bytes one write adds for a connection that is behind (whole frames)


@dataclass(eq=False)  # hashed by identity: a key of the pending writes
class _Conn:
    ws: ServerConnection
    connection_id: str  # for log lines: the id the transport gave the connection
    # What of the stream it gets, holds or drops: the pure core (actors/delivery.py).
    delivery: Delivery = field(default_factory=Delivery)
    # Frames (encoded, not yet framed) waiting for the transport to drain, in order
    backlog: deque[bytes] = field(default_factory=deque)
    backlogged: int = 0  # their bytes
    flusher: asyncio.Task[None] | None = None  # writes the backlog; None while it is empty
    high: int = WRITE_HIGH  # the transport's high-water mark: no writes above it
    bytes_out: int = 0  # written to the transport (connection_quality's bandwidth)
    frames_out: int = 0
    monitor: bool = True  # news of the service (health, performance, alerts): monitor:read
    scope: Principal | None = None  # a principal limited to some runs: only those


class Router:
    """Connections of the loop, and delivery of frames to them. Loop thread only."""

    def __init__(self, max_outbound_bytes: int) -> None:
        self._conns: dict[str, _Conn] = {}
        self._max_outbound = max_outbound_bytes
        self.slow_disconnects = 0
        self._tasks: set[asyncio.Task[None]] = set()  # closes and flushers under way
        self._out: dict[_Conn, list[bytes]] = {}  # frames to write at the end of this hand-off
        # Messages handed to connections, by type (/metrics reads it on this loop too):
        # a plain dict, no lock, and one increment per frame and batch of recipients.
        self.sent: dict[bytes, int] = {}
        # Each run's (workflow_type, principal), seeded from the log at start and
        # kept by what is published since: what a scoped principal may see.
        self._runs = RunOwners()

    def _count(self, frame: bytes, recipients: int) -> None:
        # Every frame starts {"type":"<type>" (msgspec writes the tag first).
        kind = frame[9 : frame.find(b'"', 9)]
        self.sent[kind] = self.sent.get(kind, 0) + recipients

    def add(
        self,
        connection_id: str,
        ws: ServerConnection,
        *,
        readable: bool = True,
        scope: Principal | None = None,
        monitor: bool = True,
    ) -> None:
        """Register a connection, paused until its catch-up is done."""
        conn = _Conn(ws, connection_id, Delivery(readable=readable), scope=scope, monitor=monitor)
        if ws.transport is not None:
            conn.high = ws.transport.get_write_buffer_limits()[1]
        self._conns[connection_id] = conn

    def remove(self, connection_id: str) -> None:
        """Stop delivering to a closed connection."""
        conn = self._conns.pop(connection_id, None)
        if conn is not None:
            _discard(conn)

    def __len__(self) -> int:
        return len(self._conns)

    def pause(self, connection_id: str) -> None:
        """Buffer live messages for this connection (a catch-up is about to run)."""
        conn = self._conns.get(connection_id)
        if conn is not None:
            conn.delivery.pause()

    def resume(
        self,
        connection_id: str,
        upto: int,
        follows: Collection[str] | Literal[False] | None = False,
    ) -> None:
        """End a catch-up that covered every seq <= ``upto``: flush the rest, go live.

        ``follows``: the adw_ids to follow from now on (None: all; False: unchanged).
        """
        conn = self._conns.get(connection_id)
        if conn is None:
            return
        frames = conn.delivery.resume(upto, follows, lambda adw_id: self._shown(conn, adw_id))
        if frames is None:
            return  # another catch-up (a subscribe during the first) is still running
        for frame in frames:
            self._queue(conn, frame)
        self._write_out()

    def traffic(self, connection_id: str) -> tuple[int, int, int]:
        """(bytes written, frames handed over, bytes unsent) of a connection, or zeros."""
        conn = self._conns.get(connection_id)
        if conn is None:
            return 0, 0, 0
        transport = conn.ws.transport
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        return (
            conn.bytes_out,
            conn.frames_out,
            buffered + conn.backlogged + conn.delivery.held_bytes,
        )

    def unsent_total(self) -> int:
        """Bytes waiting for every connection (transport buffers, backlogs, pause buffers)."""
        return sum(self.traffic(cid)[2] for cid in self._conns)

    def cursor(self, connection_id: str) -> int:
        """The seq a connection has been brought up to (0 if unknown)."""
        conn = self._conns.get(connection_id)
        return conn.delivery.cursor if conn is not None else 0

    async def send_frames(self, connection_id: str, frames: Sequence[bytes]) -> bool:
        """Send catch-up frames with backpressure (waits while the socket is full).

        They go after the connection's backlog (what was live before this
        catch-up paused it). False if the connection is gone: nothing more
        needs reading for it.
        """
        conn = self._conns.get(connection_id)
        if conn is None:
            return False
        if conn.flusher is not None:
            await asyncio.wait([conn.flusher])
        try:
            for frame in frames:
                await conn.ws.send(frame, text=True)
                self._count(frame, 1)
                conn.bytes_out += len(frame)
                conn.frames_out += 1
        except ConnectionClosed:
            return False
        return True

    def publish(self, batch: Sequence[StoredEvent]) -> None:
        """Deliver a committed batch, in seq order."""
        size = 0  # no connection gets more than all of it
        for stored in batch:
            e = stored.event
            if isinstance(e, RunQueued):
                self._runs.remember(e.adw_id, e.workflow_type, stored.principal)
            for target, adw_id, frame in wire_messages(stored):
                size += len(frame)
                if target is None and adw_id is None:  # about the service: an alert
                    ready = [c for c in self._conns.values() if c.monitor]
                    self._route(ready, stored.seq, frame, adw_id, addressed=False)
                elif target is None:
                    ready = [
                        c
                        for c in self._conns.values()
                        if c.delivery.wants(adw_id, shown=c.scope is None or self._shown(c, adw_id))
                    ]
                    self._route(ready, stored.seq, frame, adw_id, addressed=False)
                else:
                    conn = self._conns.get(target)
                    if conn is not None:
                        self._route([conn], stored.seq, frame, adw_id, addressed=True)
        self._write_out(size)

    def send_to(self, connection_id: str, frame: bytes) -> None:
        """Send a frame that is not part of the event stream (pong, error, queue_status)."""
        self.send_each([(connection_id, frame)])

    def send_all(self, frame: bytes) -> None:
        """Send a frame that is not part of the event stream to every connection."""
        for conn in self._conns.values():
            self._queue(conn, frame)
        self._count(frame, len(self._conns))
        self._write_out()

    def fail(self, connection_id: str, frame: bytes) -> None:
        """Send a last frame, stop delivering, and close with 1011 (its actor failed)."""
        conn = self._conns.pop(connection_id, None)
        if conn is None:
            return  # already closed
        # Its last words after everything owed to it, flow control or not: at most
        # max_outbound_bytes waited, and the close is bounded by websockets' timeout.
        frames = [*conn.backlog, frame]
        _discard(conn)
        if _open(conn.ws):
            self._write(conn, frames)
        self._spawn(conn.ws.close(CloseCode.INTERNAL_ERROR, "internal error; reconnect and resume"))

    # -- security (issue 13) -------------------------------------------------

    def set_readable(
        self, connection_id: str, readable: bool, scope: Principal | None = None
    ) -> None:
        """Allow (or stop) delivery of runs to a connection; ``scope``: only the runs
        that principal may see."""
        conn = self._conns.get(connection_id)
        if conn is not None:
            conn.delivery.readable, conn.scope = readable, scope

    def set_monitor(self, connection_id: str) -> None:
        """Deliver news of the service (its principal has monitor:read)."""
        conn = self._conns.get(connection_id)
        if conn is not None:
            conn.monitor = True

    def monitoring(self, connection_id: str) -> bool:
        """Whether news of the service goes to this connection."""
        conn = self._conns.get(connection_id)
        return conn is not None and conn.monitor

    def send_monitor(self, frames: Sequence[tuple[str, bytes]]) -> None:
        """Like send_each, to connections that may read news of the service only
        (health_status, performance_metrics: monitor:read, docs/security.md)."""
        self.send_each([(cid, f) for cid, f in frames if (c := self._conns.get(cid)) and c.monitor])

    def visible(self, connection_id: str) -> frozenset[str] | None:
        """The adw_ids a scoped connection may see now (None: unscoped, every run)."""
        conn = self._conns.get(connection_id)
        if conn is None or conn.scope is None:
            return None
        scope = conn.scope
        return self._runs.granted(scope) if scope.may(Permission.WORKFLOW_READ) else frozenset()

    def seed(self, runs: RunOwners) -> None:
        """Each run's (workflow_type, principal) from the log (``owners``), so a
        restart hides no principal's own runs. Called once at start; what was
        published meanwhile is newer and wins."""
        live, self._runs = self._runs, runs
        for adw_id, (workflow_type, owner) in live.items():
            runs.remember(adw_id, workflow_type, owner)

    def within(self, adw_id: str, scope: Principal) -> bool:
        """Whether the run ``adw_id`` is within ``scope``'s grant (its workflow types,
        its own runs): a scoped cancel, what the HTTP read API shows it."""
        run = self._runs.get(adw_id)
        return run is not None and within(scope, *run)

    def _shown(self, conn: _Conn, adw_id: str | None) -> bool:
        """Whether a broadcast about ``adw_id`` may go to ``conn`` (its scope; about
        the service, ``adw_id`` None: whether it may read news of the service)."""
        if adw_id is None:
            return conn.monitor
        if conn.scope is None:
            return True
        run = self._runs.get(adw_id)
        return run is not None and sees(conn.scope, *run)

    def send_readable(self, frames: Sequence[tuple[str, bytes]]) -> None:
        """Like send_each, to connections allowed to read runs only (the projector's)."""
        self.send_each(
            [(cid, f) for cid, f in frames if (c := self._conns.get(cid)) and c.delivery.readable]
        )

    def close(self, connection_id: str, code: int, reason: str) -> None:
        """Close a connection with ``code`` after what is queued for it (the guard's)."""
        conn = self._conns.pop(connection_id, None)
        if conn is None:
            return
        self._write_out()  # what this hand-off queued for it goes first
        frames = list(conn.backlog)
        _discard(conn)
        if frames and _open(conn.ws):
            self._write(conn, frames)
        self._spawn(conn.ws.close(code, reason))

    def send_each(self, frames: Sequence[tuple[str, bytes]]) -> None:
        """Send several frames, each to its connection (one loop hand-off for all)."""
        for connection_id, frame in frames:
            conn = self._conns.get(connection_id)
            if conn is not None:
                self._queue(conn, frame)
                self._count(frame, 1)
        self._write_out()

    def _route(
        self, conns: list[_Conn], seq: int, frame: bytes, adw_id: str | None, *, addressed: bool
    ) -> None:
        self._count(frame, len(conns))
        for conn in conns:
            delivery = conn.delivery
            if delivery.offer(seq, frame, adw_id, addressed=addressed):
                self._queue(conn, frame)
            elif delivery.over(conn.backlogged, self._max_outbound):
                self._drop_slow(conn, delivery.held_bytes + conn.backlogged, "held back")

    def _queue(self, conn: _Conn, frame: bytes) -> None:
        conn.frames_out += 1
        frames = self._out.get(conn)
        if frames is None:
            self._out[conn] = [frame]
        else:
            frames.append(frame)

    def _write_out(self, most: int | None = None) -> None:
        """Write each connection's queued frames in one go (text frames: browsers hand
        binary ones over as Blobs); for a connection behind, as far as its transport
        has room, the rest waiting in its backlog. ``most``: no connection has more
        bytes queued than that (spares adding up each connection's)."""
        out, self._out = self._out, {}
        small = most is not None and most <= CHUNK
        slow: list[tuple[_Conn, int]] = []
        for conn, frames in out.items():
            ws = conn.ws
            transport = ws.transport
            if transport is None or transport.is_closing() or ws.protocol.state is not State.OPEN:
                # Closing, or the peer vanished (a failed send closes the transport
                # before websockets hears of it): its handler ends and removes it.
                # Writing on would only make asyncio warn once per frame.
                continue
            if (
                not conn.backlog
                and transport.get_write_buffer_size() < conn.high
                and (small or len(frames) == 1 or sum(map(len, frames)) <= CHUNK)
            ):
                # The common case: one write. As websockets.broadcast() does, through
                # the connection's Sans-I/O protocol (which compresses).
                try:
                    for frame in frames:
                        ws.protocol.send_text(frame)
                    data = b"".join(ws.protocol.data_to_send())
                    transport.write(data)
                    conn.bytes_out += len(data)
                except Exception as exc:  # a transport failing mid-write: the peer is gone
                    self._write_failed(conn, exc)
                continue
            # After what waits, if anything does; then while the transport has room.
            conn.backlog.extend(frames)
            conn.backlogged += sum(map(len, frames))
            self._pump(conn)
            if conn.backlog and conn.flusher is None:
                conn.flusher = self._spawn(self._flush(conn))
            unsent = transport.get_write_buffer_size() + conn.backlogged
            if unsent > self._max_outbound:
                slow.append((conn, unsent))
        for conn, unsent in slow:  # after the loop: dropping changes the table being iterated
            self._drop_slow(conn, unsent, "unsent")

    def _write(self, conn: _Conn, frames: Collection[bytes]) -> None:
        """Write frames in one transport write."""
        ws = conn.ws
        try:
            for frame in frames:
                ws.protocol.send_text(frame)
            data = b"".join(ws.protocol.data_to_send())
            ws.transport.write(data)
            conn.bytes_out += len(data)
        except Exception as exc:  # a transport failing mid-write: the peer is gone
            self._write_failed(conn, exc)

    def _pump(self, conn: _Conn) -> None:
        """Write the backlog while the transport is under its high-water mark."""
        transport = conn.ws.transport
        while (
            conn.backlog
            and transport.get_write_buffer_size() < conn.high
            and not transport.is_closing()  # a write failed: asyncio would warn per write
        ):
            self._write_chunk(conn)

    def _write_chunk(self, conn: _Conn) -> None:
        """Write the backlog's first frames in one write: CHUNK bytes as sent (once
        compressed), or a little more (whole frames), or all of it."""
        ws, backlog = conn.ws, conn.backlog
        protocol = ws.protocol
        data: list[bytes] = []
        size = 0
        try:
            while backlog and size < CHUNK:
                frame = backlog.popleft()
                conn.backlogged -= len(frame)
                protocol.send_text(frame)
                for part in protocol.data_to_send():
                    data.append(part)
                    size += len(part)
            ws.transport.write(b"".join(data))
            conn.bytes_out += size
        except Exception as exc:  # a transport failing mid-write: the peer is gone
            _discard(conn)
            self._write_failed(conn, exc)

    def _write_failed(self, conn: _Conn, exc: Exception) -> None:
        log.warning(
            "could not write to %s: %s",
            conn.ws.remote_address,
            exc,
            extra={"connection": conn.connection_id},
        )

    async def _flush(self, conn: _Conn) -> None:
        """Write a connection's backlog, in order and in whole frames, as its transport
        drains: websockets' drain() returns once asyncio's resume_writing says the
        buffer is back under its low-water mark."""
        ws = conn.ws
        try:
            while conn.backlog:
                try:
                    await ws.drain()
                except Exception:  # lost while waiting: drain raises the reason
                    break
                if not conn.backlog or not _open(ws):
                    break  # discarded (too slow, closed), or the peer is gone
                self._write_chunk(conn)  # at least one: drain said there is room
                self._pump(conn)
        finally:
            conn.flusher = None
            _discard(conn)  # empty unless the connection is gone

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _drop_slow(self, conn: _Conn, unsent: int, what: str) -> None:
        self._out.pop(conn, None)
        for connection_id, other in list(self._conns.items()):
            if other is conn:
                del self._conns[connection_id]
        # Frames never written are dropped whole: the close frame goes right
        # behind what the transport holds (its high-water mark and a chunk at most).
        _discard(conn)
        conn.delivery.drop()
        self.slow_disconnects += 1
        log.warning(
            "closing slow client %s: %d bytes %s, over the limit of %d",
            conn.ws.remote_address,
            unsent,
            what,
            self._max_outbound,
            extra={"connection": conn.connection_id},
        )
        ws = conn.ws
        self._spawn(ws.close(CloseCode.TRY_AGAIN_LATER, SLOW_REASON))
        # Bound the attempt. websockets aborts after close_timeout too, but only
        # once its buffer drained, which a client that reads nothing never lets
        # happen.
        if ws.close_timeout is not None:
            asyncio.get_running_loop().call_later(ws.close_timeout, _cut, ws)


def _open(ws: ServerConnection) -> bool:
    transport = ws.transport
    return transport is not None and not transport.is_closing() and ws.protocol.state is State.OPEN


def _discard(conn: _Conn) -> None:
    """Forget the frames waiting for the transport (its flusher then ends)."""
    conn.backlog.clear()
    conn.backlogged = 0


def _cut(ws: ServerConnection) -> None:
    """Close timeout after a 1013: end the TCP connection if the client never answered."""
    if ws.protocol.state is not State.CLOSED and ws.transport is not None:
        ws.transport.abort()
