"""A client too slow to keep up is closed with 1013, and gets that close frame.

The close frame must not wait behind the data the client is not reading:
frames the router has not written yet are dropped whole, so it lands right
behind what the socket already holds, and a client that reads at all gets it
before websockets' close timeout cuts the connection.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

from websockets.sync.client import ClientConnection, connect

from adwd.actors.catalogue import WorkflowSpec
from adwd.actors.wireview import wire_messages
from tests.integration.conftest import TIMEOUT, Running

MAX_OUTBOUND = 1024 * 1024
REASON = "too slow to keep up; reconnect and subscribe from your last seq"  # docs/protocol.md
# About 3 MiB of progress messages of ~2 KB each: far more than the client's socket
# buffers and MAX_OUTBOUND together.
FLOOD = (
    "import json\n"
    "for i in range(1500):\n"
    "    message = str(i) * (1900 // len(str(i)))\n"
    "    line = json.dumps({{'progress_percent': i % 100, 'message': message}})\n"
    "    print('ADW-PROGRESS ' + line, flush=True)\n"
)


class _Dropped(logging.Handler):
    """Sets ``event`` when the router says it is closing a slow client."""

    def __init__(self) -> None:
        super().__init__()
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("closing slow client"):
            self.event.set()


@contextlib.contextmanager
def _watch_drops() -> Iterator[threading.Event]:
    handler = _Dropped()
    logger = logging.getLogger("adwd.actors.router")
    logger.addHandler(handler)
    try:
        yield handler.event
    finally:
        logger.removeHandler(handler)


def _connect_without_reading(port: int) -> socket.socket:
    """A WebSocket handshake by hand on a socket with small buffers, then nothing.

    A small receive buffer and segment size keep the kernel's buffers on both
    sides (loopback's are megabytes otherwise) far under MAX_OUTBOUND.
    """
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1024)
        sock.settimeout(TIMEOUT)
        sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            f"GET /ws/trigger HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = b""
        while not head.endswith(b"\r\n\r\n"):  # byte by byte: no frame read with it
            byte = sock.recv(1)
            assert byte, f"closed during the handshake: {head!r}"
            head += byte
        assert head.startswith(b"HTTP/1.1 101 "), head
    except BaseException:
        sock.close()
        raise
    return sock


class _Frames:
    """Server frames (unmasked) read off a raw socket, whole or not at all."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.data = bytearray()
        self.at = 0  # offset of the first frame not returned yet

    def next(self) -> tuple[int, bytes, int] | None:
        """(opcode, payload, offset of the frame), or None at end of stream."""
        while True:
            frame = self._parse()
            if frame is not None:
                return frame
            chunk = self.sock.recv(65536)
            if not chunk:
                assert self.at == len(self.data), (
                    f"the stream ends inside a frame, {len(self.data) - self.at} bytes in"
                )
                return None
            self.data += chunk

    def _parse(self) -> tuple[int, bytes, int] | None:
        data, at = self.data, self.at
        if len(data) - at < 2:
            return None
        first, second = data[at], data[at + 1]
        assert first & 0x80, "a fragmented message"
        assert not second & 0x80, "a masked server frame"
        length, head = second & 0x7F, 2
        if length == 126:
            if len(data) - at < 4:
                return None
            (length,), head = struct.unpack_from("!H", data, at + 2), 4
        elif length == 127:
            if len(data) - at < 10:
                return None
            (length,), head = struct.unpack_from("!Q", data, at + 2), 10
        if len(data) - at < head + length:
            return None
        self.at = at + head + length
        return first & 0x0F, bytes(data[at + head : self.at]), at


def _masked_close(code: int) -> bytes:
    """A client close frame (clients mask theirs)."""
    mask = os.urandom(4)
    payload = struct.pack("!H", code)
    return (
        bytes([0x88, 0x80 | len(payload)])
        + mask
        + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    )


def _final(ws: ClientConnection, adw_id: str) -> None:
    """Read until the run's last message: its final workflow_metrics."""
    while True:
        message = json.loads(ws.recv(timeout=TIMEOUT))
        data = message.get("data", {})
        if message["type"] == "workflow_metrics" and (data["adw_id"], data["phase"]) == (
            adw_id,
            "final",
        ):
            return


def _key(message: dict[str, Any]) -> tuple[Any, ...]:
    return (message["type"], message.get("seq"), json.dumps(message["data"], sort_keys=True))


def _expected(server: Running, since: int) -> list[tuple[Any, ...]]:
    """Every broadcast message the log holds after ``since``."""
    return [
        _key(json.loads(frame))
        for stored in server.events()
        if stored.seq > since
        for target, _, frame in wire_messages(stored)
        if target is None
    ]


def test_a_slow_client_gets_its_1013_close_frame(start_service: Callable[..., Running]) -> None:
    server = start_service(
        max_outbound_bytes=MAX_OUTBOUND,
        workflows={"adw_flood": WorkflowSpec(argv=("{python}", "-c", FLOOD))},
    )
    with (
        _watch_drops() as dropped,
        contextlib.closing(_connect_without_reading(server.service.port)) as slow,
        # Follows the flood too, and keeps up: it queues all it receives.
        connect(server.url, open_timeout=TIMEOUT, max_queue=None) as board,
    ):
        board.send(
            json.dumps(
                {
                    "type": "trigger_workflow",
                    "data": {"workflow_type": "adw_flood", "adw_id": "flood1"},
                }
            )
        )
        assert dropped.wait(TIMEOUT), "the client that reads nothing was never closed"

        # It reads again: every frame whole and in order, then the close frame.
        frames = _Frames(slow)
        messages = []
        while (frame := frames.next()) is not None:
            opcode, payload, offset = frame
            if opcode == 0x8:
                break
            assert opcode == 0x1, f"opcode {opcode}"
            messages.append(json.loads(payload))
        else:
            raise AssertionError(
                f"no close frame, only a TCP close, after {len(messages)} messages"
            )
        code, reason = struct.unpack_from("!H", payload)[0], payload[2:].decode()
        assert (code, reason) == (1013, REASON)
        # Behind the little the server's socket held: not behind MAX_OUTBOUND unsent.
        assert offset < MAX_OUTBOUND, f"the close frame came after {offset} bytes"
        seqs = [m["seq"] for m in messages if m.get("seq") is not None]
        assert seqs, "it got some of the flood before it fell behind"
        assert seqs == sorted(seqs)

        # The closing handshake completes: the server ends the TCP connection.
        slow.sendall(_masked_close(1013))
        assert frames.next() is None
        _final(board, "flood1")

    # Nothing is lost: resuming from the last seq it got brings exactly the rest.
    last = seqs[-1]
    back = server.client(f"/ws/trigger?since={last}")
    assert back.wait_for(lambda m: m["type"] == "subscribed")["data"]["recovered"] is True
    back.wait_for(
        lambda m: (
            m["type"] == "workflow_metrics"
            and m["data"]["adw_id"] == "flood1"
            and m["data"]["phase"] == "final"
        )
    )
    resumed = [_key(m) for m in back.seen if m.get("seq") is not None and m["type"] != "subscribed"]
    assert resumed == _expected(server, last)
