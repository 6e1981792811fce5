"""The Router's flow control, against a fake connection whose peer reads on demand.

The fake transport keeps everything written until the test's peer reads it
(a full socket, as with a client that stopped reading), and calls
pause_writing/resume_writing at its water marks as asyncio does. Frames are
made and parsed by websockets' own Sans-I/O protocol.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

from websockets.frames import Close, Opcode
from websockets.protocol import Protocol, Side, State

from adwd.actors.router import CHUNK, SLOW_REASON, Router

HIGH, LOW = 2**15, 2**13  # websockets' default write_limit


class FakeTransport:
    def __init__(self, ws: FakeWs) -> None:
        self.ws = ws
        self.buffer = bytearray()  # written, not read by the peer yet
        self.writes = 0
        self.paused = False
        self.closing = False
        self.aborted = asyncio.Event()

    def get_write_buffer_size(self) -> int:
        return len(self.buffer)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return LOW, HIGH

    def is_closing(self) -> bool:
        return self.closing

    def write(self, data: bytes) -> None:
        assert not self.closing, "a write after the transport closed"
        self.writes += 1
        self.buffer += data
        if len(self.buffer) > HIGH and not self.paused:
            self.paused = True
            self.ws.pause_writing()

    def take(self, n: int | None = None) -> bytes:
        """What the peer reads: ``n`` bytes, or all."""
        n = len(self.buffer) if n is None else n
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        if self.paused and len(self.buffer) <= LOW:
            self.paused = False
            self.ws.resume_writing()
        return data

    def abort(self) -> None:
        self.closing = True
        self.aborted.set()
        self.ws.connection_lost()


class FakeWs:
    """What the Router uses of a websockets ServerConnection (and how it behaves)."""

    def __init__(self, close_timeout: float = 10.0) -> None:
        self.protocol = Protocol(Side.SERVER)
        self.transport = FakeTransport(self)
        self.remote_address = ("127.0.0.1", 50000)
        self.close_timeout = close_timeout
        self.paused = False
        self.waiters: list[asyncio.Future[None]] = []

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._wake()

    def connection_lost(self) -> None:
        self.protocol.receive_eof()
        self.paused = False
        self._wake()

    def _wake(self) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.waiters.clear()

    async def drain(self) -> None:
        if self.paused:
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            await waiter

    def _send_data(self) -> None:
        self.transport.write(b"".join(self.protocol.data_to_send()))

    async def send(self, frame: bytes, *, text: bool) -> None:
        assert text
        self.protocol.send_text(frame)
        self._send_data()
        await self.drain()

    async def close(self, code: int, reason: str) -> None:
        self.protocol.send_close(code, reason)
        self._send_data()


class Peer:
    """The client: parses what it reads with websockets' own protocol."""

    def __init__(self, ws: FakeWs) -> None:
        self.transport = ws.transport
        self.protocol = Protocol(Side.CLIENT, max_size=None)
        self.close: Close | None = None

    def read(self, n: int | None = None) -> list[int]:
        """The ids of the messages in what it reads (whole frames only)."""
        self.protocol.receive_data(self.transport.take(n))
        ids = []
        for frame in self.protocol.events_received():
            assert self.close is None, "a frame after the close frame"
            if frame.opcode is Opcode.CLOSE:
                self.close = Close.parse(frame.data)
            else:
                assert frame.opcode is Opcode.TEXT
                assert frame.fin
                ids.append(json.loads(frame.data)["id"])
        return ids


def _frame(i: int, size: int = 1000) -> bytes:
    body = json.dumps({"id": i, "pad": ""}).encode()
    return body[:-2] + b"x" * (size - len(body)) + b'"}'


def _run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


async def _settle() -> None:
    """Let the loop run what is ready (a flusher woken, a close task)."""
    for _ in range(5):
        await asyncio.sleep(0)


def _connect(router: Router, ws: FakeWs, cid: str = "c1") -> None:
    router.add(cid, ws)
    router.resume(cid, 0)  # live


def _fill(router: Router, ws: FakeWs, cid: str = "c1") -> list[int]:
    """Hand-offs until the transport is over its high-water mark: the ids written."""
    ids = []
    for i in range(100):
        if ws.paused:
            return ids
        router.send_to(cid, _frame(i))
        ids.append(i)
    raise AssertionError("the transport never filled up")


def _overflow(router: Router, cid: str = "c1") -> None:
    """More hand-offs, until the router gives up on the connection."""
    for i in range(1000, 1200):
        router.send_to(cid, _frame(i))
        if router.slow_disconnects:
            return
    raise AssertionError("never closed as too slow")


def test_a_client_that_keeps_up_gets_one_write_per_hand_off() -> None:
    async def test() -> None:
        router, ws = Router(max_outbound_bytes=4096), FakeWs()
        _connect(router, ws)
        peer = Peer(ws)
        for start in (0, 10):
            router.send_each([("c1", _frame(i)) for i in range(start, start + 10)])
            assert peer.read() == list(range(start, start + 10))
        assert ws.transport.writes == 2

    _run(test)


def test_frames_wait_in_order_while_the_transport_is_full() -> None:
    async def test() -> None:
        router, ws = Router(max_outbound_bytes=1024 * 1024), FakeWs()
        _connect(router, ws)
        peer = Peer(ws)
        written = _fill(router, ws)
        writes = ws.transport.writes
        router.send_each([("c1", _frame(i)) for i in range(100, 150)])
        router.send_to("c1", _frame(150))
        assert ws.transport.writes == writes, "nothing more is written while it is full"
        assert len(ws.transport.buffer) <= HIGH + 1100
        got = peer.read(4000)  # not enough to drain it: still nothing written
        await _settle()
        assert ws.transport.writes == writes
        while len(got) < len(written) + 51:
            got += peer.read()  # drained: the backlog flows, a chunk at a time
            await _settle()
        assert got == [*written, *range(100, 151)]
        assert router.slow_disconnects == 0

    _run(test)


def test_a_big_hand_off_leaves_at_most_a_chunk_in_the_transport() -> None:
    async def test() -> None:
        router, ws = Router(max_outbound_bytes=1024 * 1024), FakeWs()
        _connect(router, ws)
        peer = Peer(ws)
        router.send_each([("c1", _frame(i)) for i in range(300)])  # 300 KB
        assert ws.transport.writes == 1
        assert HIGH < len(ws.transport.buffer) <= CHUNK + 1100
        got: list[int] = []
        while len(got) < 300:
            got += peer.read()
            await _settle()
        assert got == list(range(300))

    _run(test)


def test_too_slow_the_backlog_is_dropped_and_1013_comes_right_behind() -> None:
    async def test() -> None:
        router, ws = Router(max_outbound_bytes=100_000), FakeWs()
        _connect(router, ws)
        written = _fill(router, ws)
        _overflow(router)
        assert len(router) == 0
        router.send_to("c1", _frame(9999))  # forgotten: nothing more goes to it
        await _settle()
        peer = Peer(ws)
        assert peer.read() == written  # what the transport held, whole; no backlog
        assert peer.close is not None
        assert (peer.close.code, peer.close.reason) == (1013, SLOW_REASON)

    _run(test)


def test_held_back_messages_count_with_the_backlog() -> None:
    async def test() -> None:
        router, ws = Router(max_outbound_bytes=100_000), FakeWs()
        _connect(router, ws)
        written = _fill(router, ws)
        for i in range(1000, 1040):  # 40 KB waiting in the backlog
            router.send_to("c1", _frame(i))
        router.pause("c1")  # a subscribe: live messages are held back
        frame = _frame(2000, size=61_000)  # 40 KB + 61 KB > the limit
        router._route([router._conns["c1"]], 5, frame, None, addressed=False)
        assert router.slow_disconnects == 1
        await _settle()
        peer = Peer(ws)
        assert peer.read() == written
        assert peer.close is not None
        assert peer.close.code == 1013

    _run(test)


def test_one_that_reads_nothing_is_cut_after_the_close_timeout() -> None:
    async def test() -> None:
        router, ws = Router(max_outbound_bytes=100_000), FakeWs(close_timeout=0.05)
        _connect(router, ws)
        _fill(router, ws)
        _overflow(router)
        await asyncio.wait_for(ws.transport.aborted.wait(), 5)
        assert ws.protocol.state is State.CLOSED

    _run(test)


def test_catch_up_frames_go_after_the_backlog() -> None:
    async def test() -> None:
        router, ws = Router(max_outbound_bytes=1024 * 1024), FakeWs()
        _connect(router, ws)
        peer = Peer(ws)
        written = _fill(router, ws)
        router.send_each([("c1", _frame(i)) for i in range(100, 110)])  # waiting
        router.pause("c1")  # a subscribe: its catch-up replays 200..204
        catch_up = asyncio.ensure_future(
            router.send_frames("c1", [_frame(i) for i in range(200, 205)])
        )
        await _settle()
        assert not catch_up.done()
        got: list[int] = []
        while not catch_up.done():
            got += peer.read()
            await _settle()
        assert catch_up.result() is True
        router.resume("c1", 0)
        got += peer.read()
        assert got == [*written, *range(100, 110), *range(200, 205)]

    _run(test)


def test_a_failing_actor_gets_its_last_frame_after_the_backlog() -> None:
    async def test() -> None:
        router, ws = Router(max_outbound_bytes=1024 * 1024), FakeWs()
        _connect(router, ws)
        written = _fill(router, ws)
        router.send_each([("c1", _frame(i)) for i in range(100, 110)])
        router.fail("c1", _frame(500))
        await _settle()
        peer = Peer(ws)
        assert peer.read() == [*written, *range(100, 110), 500]
        assert peer.close is not None
        assert peer.close.code == 1011

    _run(test)
