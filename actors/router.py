"""The router: committed events to wire messages, fanned out on the loop.

Runs on the transport's asyncio thread (the EventLogActor hands it each
committed batch with ``call_soon_threadsafe``). Each message is encoded once
and written to every follower with ``websockets.broadcast``; routing one
broadcast through per-connection actors would cost a thread hand-off per
delivery (ARCHITECTURE.md, measured facts).

Every connection's outbound buffer is bounded: a client whose unsent bytes
exceed ``max_outbound_bytes`` is closed with 1013 (try again later). It can
reconnect and resume; the log still holds everything it missed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence

from websockets.asyncio.server import ServerConnection, broadcast

from events.codec import encode
from events.domain import (
    RunCompleted,
    RunFailed,
    RunProgress,
    RunQueued,
    RunStarted,
    TriggerDeduplicated,
    TriggerRejected,
)
from events.errors import CloseCode
from events.store import StoredEvent
from events.wire import StatusUpdate, StatusUpdateData, TriggerResponse, TriggerResponseData

log = logging.getLogger(__name__)

# (connection id or None for every follower, encoded frame)
Delivery = tuple[str | None, bytes]


def wire_messages(stored: StoredEvent) -> list[Delivery]:
    """The wire messages one committed event becomes, and who gets them."""
    e = stored.event
    seq = stored.seq
    if isinstance(e, RunQueued | TriggerDeduplicated):
        if e.connection_id is None:
            return []
        data = TriggerResponseData(
            status="accepted",
            adw_id=e.adw_id,
            workflow_name=e.workflow_type,
            logs_path=e.logs_path,
            message="queued"
            if isinstance(e, RunQueued)
            else "already queued or running; no new run started",
        )
        return [(e.connection_id, encode(TriggerResponse(data, seq=seq)))]
    if isinstance(e, TriggerRejected):
        if e.connection_id is None:
            return []
        data = TriggerResponseData(
            status="rejected",
            adw_id=e.adw_id,
            workflow_name=e.workflow_type,
            logs_path="",
            error=e.error,
            message=e.message,
            details=e.details,
        )
        return [(e.connection_id, encode(TriggerResponse(data, seq=seq)))]
    status = _status(e)
    if status is None:
        return []
    return [(None, encode(StatusUpdate(status, seq=seq)))]


def _status(e: object) -> StatusUpdateData | None:
    if isinstance(e, RunStarted):
        return StatusUpdateData(
            adw_id=e.adw_id,
            status="started",
            message=f"{e.workflow_type} started (pid {e.pid})",
            progress_percent=0,
            current_step="Starting",
            workflow_name=e.workflow_type,
        )
    if isinstance(e, RunProgress):
        return StatusUpdateData(
            adw_id=e.adw_id,
            status="running",
            message=e.message,
            progress_percent=e.progress_percent,
            current_step=e.current_step,
            workflow_name=e.workflow_type,
        )
    if isinstance(e, RunCompleted):
        return StatusUpdateData(
            adw_id=e.adw_id,
            status="completed",
            message=f"{e.workflow_type} completed in {e.duration_s:.2f} s",
            progress_percent=100,
            current_step="Completed",
            workflow_name=e.workflow_type,
        )
    if isinstance(e, RunFailed):
        return StatusUpdateData(
            adw_id=e.adw_id,
            status="failed",
            message=e.reason,
            progress_percent=e.progress_percent,
            current_step="Cancelled" if e.cancelled else "Failed",
            workflow_name=e.workflow_type,
        )
    return None


class Router:
    """Connections of the loop, and delivery of frames to them. Loop thread only."""

    def __init__(self, max_outbound_bytes: int) -> None:
        self._connections: dict[str, ServerConnection] = {}
        self._max_outbound = max_outbound_bytes
        self.slow_disconnects = 0
        self._closing: set[asyncio.Task[None]] = set()

    def add(self, connection_id: str, ws: ServerConnection) -> None:
        """Follow every run from now on (a Kanban board shows all its cards)."""
        self._connections[connection_id] = ws

    def remove(self, connection_id: str) -> None:
        """Stop delivering to a closed connection."""
        self._connections.pop(connection_id, None)

    def __len__(self) -> int:
        return len(self._connections)

    def connections(self) -> list[ServerConnection]:
        """Every open connection."""
        return list(self._connections.values())

    def publish(self, batch: Sequence[StoredEvent]) -> None:
        """Deliver a committed batch, in seq order."""
        for stored in batch:
            for target, frame in wire_messages(stored):
                if target is None:
                    self._deliver(self._connections.values(), frame)
                else:
                    self.send_to(target, frame)

    def send_to(self, connection_id: str, frame: bytes) -> None:
        """Deliver a frame to one connection, if it is still open."""
        ws = self._connections.get(connection_id)
        if ws is not None:
            self._deliver((ws,), frame)

    def _deliver(self, targets: Iterable[ServerConnection], frame: bytes) -> None:
        ready, slow = [], []
        for ws in targets:
            transport = ws.transport
            if transport is not None and transport.get_write_buffer_size() > self._max_outbound:
                slow.append(ws)
            else:
                ready.append(ws)
        # JSON goes out as text frames: browsers hand binary frames over as Blobs.
        broadcast(ready, frame, text=True)
        for ws in slow:  # after the loop: dropping changes the dict being iterated
            self._drop_slow(ws)

    def _drop_slow(self, ws: ServerConnection) -> None:
        for connection_id, other in list(self._connections.items()):
            if other is ws:
                del self._connections[connection_id]
        self.slow_disconnects += 1
        log.warning("closing slow client %s: outbound buffer over the limit", ws.remote_address)
        task = asyncio.get_running_loop().create_task(
            ws.close(
                CloseCode.TRY_AGAIN_LATER,
                "too slow to keep up; reconnect (the log keeps what you missed)",
            )
        )
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
