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

Every connection's outbound data is bounded: a client whose unsent bytes
(socket buffer, or pause buffer) exceed ``max_outbound_bytes`` is closed
with 1013 (try again later). It can reconnect and resume; the log still
holds everything it missed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from adwd.actors.wireview import wire_messages
from adwd.events.errors import CloseCode
from adwd.events.store import StoredEvent

log = logging.getLogger(__name__)


@dataclass(eq=False)  # hashed by identity: a key of the pending writes
class _Conn:
    ws: ServerConnection
    connection_id: str  # for log lines: the id the transport gave the connection
    follows: frozenset[str] | None = None  # None: every run
    # (seq, frame, addressed to this connection alone); None: live
    buffer: list[tuple[int, bytes, bool, str | None]] | None = field(default_factory=list)
    buffered: int = 0
    pauses: int = 1  # catch-ups under way; live again at 0
    upto: int = 0  # highest seq the catch-ups under way covered
    cursor: int = 0  # the seq this connection has been brought up to


class Router:
    """Connections of the loop, and delivery of frames to them. Loop thread only."""

    def __init__(self, max_outbound_bytes: int) -> None:
        self._conns: dict[str, _Conn] = {}
        self._max_outbound = max_outbound_bytes
        self.slow_disconnects = 0
        self._closing: set[asyncio.Task[None]] = set()
        self._out: dict[_Conn, list[bytes]] = {}  # frames to write at the end of this hand-off

    def add(self, connection_id: str, ws: ServerConnection) -> None:
        """Register a connection, paused until its catch-up is done."""
        self._conns[connection_id] = _Conn(ws, connection_id)

    def remove(self, connection_id: str) -> None:
        """Stop delivering to a closed connection."""
        self._conns.pop(connection_id, None)

    def __len__(self) -> int:
        return len(self._conns)

    def pause(self, connection_id: str) -> None:
        """Buffer live messages for this connection (a catch-up is about to run)."""
        conn = self._conns.get(connection_id)
        if conn is None:
            return
        if conn.buffer is None:
            conn.buffer, conn.buffered = [], 0
        conn.pauses += 1

    def resume(
        self,
        connection_id: str,
        upto: int,
        follows: Collection[str] | bool | None = False,
    ) -> None:
        """End a catch-up that covered every seq <= ``upto``: flush the rest, go live.

        ``follows``: the adw_ids to follow from now on (None: all; False: unchanged).
        """
        conn = self._conns.get(connection_id)
        if conn is None:
            return
        if follows is not False:
            conn.follows = None if follows is None else frozenset(follows)  # type: ignore[arg-type]
        conn.pauses = max(0, conn.pauses - 1)
        conn.upto = max(conn.upto, upto)
        conn.cursor = max(conn.cursor, upto)
        if conn.pauses:
            return  # another catch-up (a subscribe during the first) is still running
        pending, conn.buffer, conn.buffered = conn.buffer or [], None, 0
        upto, conn.upto = conn.upto, 0
        follows = conn.follows
        for seq, frame, addressed, adw_id in pending:
            # What every follower sees up to ``upto`` was sent by the catch-ups (as
            # events or as state). Replies to this connection (trigger_response...)
            # are never replayed, so each is delivered here exactly once: possibly
            # after broadcasts of higher seqs. Clients match replies by request_id.
            # A subscribe may have narrowed what it follows while these waited.
            wanted = follows is None or adw_id is None or adw_id in follows
            if addressed or (seq > upto and wanted):
                self._queue(conn, frame)
        self._write_out()

    def cursor(self, connection_id: str) -> int:
        """The seq a connection has been brought up to (0 if unknown)."""
        conn = self._conns.get(connection_id)
        return conn.cursor if conn is not None else 0

    async def send_frames(self, connection_id: str, frames: Sequence[bytes]) -> bool:
        """Send catch-up frames with backpressure (waits while the socket is full).

        False if the connection is gone: nothing more needs reading for it.
        """
        conn = self._conns.get(connection_id)
        if conn is None:
            return False
        try:
            for frame in frames:
                await conn.ws.send(frame, text=True)
        except ConnectionClosed:
            return False
        return True

    def publish(self, batch: Sequence[StoredEvent]) -> None:
        """Deliver a committed batch, in seq order."""
        for stored in batch:
            for target, adw_id, frame in wire_messages(stored):
                if target is None:
                    ready = [
                        c
                        for c in self._conns.values()
                        if c.follows is None or adw_id is None or adw_id in c.follows
                    ]
                    self._route(ready, stored.seq, frame, adw_id, addressed=False)
                else:
                    conn = self._conns.get(target)
                    if conn is not None:
                        self._route([conn], stored.seq, frame, adw_id, addressed=True)
        self._write_out()

    def send_to(self, connection_id: str, frame: bytes) -> None:
        """Send a frame that is not part of the event stream (pong, error, queue_status)."""
        self.send_each([(connection_id, frame)])

    def fail(self, connection_id: str, frame: bytes) -> None:
        """Send a last frame, stop delivering, and close with 1011 (its actor failed)."""
        conn = self._conns.pop(connection_id, None)
        if conn is None:
            return  # already closed
        self._queue(conn, frame)
        self._write_out()
        task = asyncio.get_running_loop().create_task(
            conn.ws.close(CloseCode.INTERNAL_ERROR, "internal error; reconnect and resume")
        )
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def send_each(self, frames: Sequence[tuple[str, bytes]]) -> None:
        """Send several frames, each to its connection (one loop hand-off for all)."""
        for connection_id, frame in frames:
            conn = self._conns.get(connection_id)
            if conn is not None:
                self._queue(conn, frame)
        self._write_out()

    def _route(
        self, conns: list[_Conn], seq: int, frame: bytes, adw_id: str | None, *, addressed: bool
    ) -> None:
        for conn in conns:
            if conn.buffer is None:
                self._queue(conn, frame)
                conn.cursor = seq
                continue
            conn.buffer.append((seq, frame, addressed, adw_id))
            conn.buffered += len(frame)
            if conn.buffered > self._max_outbound:
                self._drop_slow(conn)

    def _queue(self, conn: _Conn, frame: bytes) -> None:
        frames = self._out.get(conn)
        if frames is None:
            self._out[conn] = [frame]
        else:
            frames.append(frame)

    def _write_out(self) -> None:
        """Write each connection's queued frames in one go (text frames: browsers hand
        binary ones over as Blobs)."""
        out, self._out = self._out, {}
        slow = []
        for conn, frames in out.items():
            ws = conn.ws
            transport = ws.transport
            if transport is None or transport.is_closing() or ws.protocol.state is not State.OPEN:
                # Closing, or the peer vanished (a failed send closes the transport
                # before websockets hears of it): its handler ends and removes it.
                # Writing on would only make asyncio warn once per frame.
                continue
            if transport.get_write_buffer_size() > self._max_outbound:
                slow.append(conn)
                continue
            # As websockets.broadcast() does, through the connection's Sans-I/O
            # protocol (which compresses), but one write for all the frames.
            try:
                for frame in frames:
                    ws.protocol.send_text(frame)
                transport.write(b"".join(ws.protocol.data_to_send()))
            except Exception as exc:  # a transport failing mid-write: the peer is gone
                log.warning(
                    "could not write to %s: %s",
                    ws.remote_address,
                    exc,
                    extra={"connection": conn.connection_id},
                )
        for conn in slow:  # after the loop: dropping changes the table being iterated
            self._drop_slow(conn)

    def _drop_slow(self, conn: _Conn) -> None:
        self._out.pop(conn, None)
        for connection_id, other in list(self._conns.items()):
            if other is conn:
                del self._conns[connection_id]
        self.slow_disconnects += 1
        log.warning(
            "closing slow client %s: outbound data over the limit",
            conn.ws.remote_address,
            extra={"connection": conn.connection_id},
        )
        task = asyncio.get_running_loop().create_task(
            conn.ws.close(
                CloseCode.TRY_AGAIN_LATER,
                "too slow to keep up; reconnect and subscribe from your last seq",
            )
        )
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
