"""AdwdClient against the real service (in-process, real SQLite, real child
processes), through a TCP relay that can hold and cut the line, and against
bare WebSocket servers that script the other side: real sockets, so an
integration test. The client's pure parts are tested alone in tests/transport/.

Every wait is on an event, a message or a future, bounded by ``T``; nothing
sleeps to let time pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import socket
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from websockets.asyncio.server import ServerConnection, serve

from adwd.actors.catalogue import WorkflowSpec
from adwd.actors.wireview import wire_messages
from adwd.events.errors import ErrorCode
from adwd.events.wire import (
    Pong,
    ServerMessage,
    StatusUpdate,
    Subscribed,
    SubscribedData,
)
from adwd.service.app import Service
from adwd.transport.client import (
    AdwdClient,
    ClientClosed,
    ClientError,
    ConnectFailed,
    RequestTimeout,
    SlowConsumer,
    TriggerRejected,
)
from tests.integration import conftest as itc
from tests.integration.conftest import Running, services
from tests.messages import status_update, workflow_metrics

T = 20.0  # the bound on every wait
FAST: dict[str, float] = {
    "heartbeat_s": 0.2,
    "pong_timeout_s": 0.5,
    "backoff_initial_s": 0.05,
    "backoff_max_s": 0.2,
}
Start = Callable[..., Running]


# --------------------------------------------------------------------------
# Helpers


@contextlib.contextmanager
def _services(base: Path) -> Iterator[Start]:
    """``services``, plus ``port=``: start again on a port a stopped service used."""
    extra: list[Service] = []
    with services(base) as start:

        def start_on(port: int = 0, **overrides: Any) -> Running:
            if not port:
                return start(**overrides)
            config = msgspec.structs.replace(itc.test_config(base / "data", **overrides), port=port)
            service = Service(config)
            extra.append(service)
            service.start()
            return Running(service, base / "data")

        try:
            yield start_on
        finally:
            for service in extra:
                service.stop()


def _sleep(tmp_path: Path) -> tuple[Path, dict[str, WorkflowSpec]]:
    """adw_sleep runs that hold until the release file exists."""
    release = tmp_path / "release"
    return release, {"adw_sleep": WorkflowSpec(env={"ADW_RELEASE_FILE": str(release)})}


def _expected(server: Running, adw_id: str, after: int = 0) -> list[tuple[str, int]]:
    """(type, seq) of every stream message the log holds for ``adw_id`` after ``after``."""
    out = []
    for stored in server.events():
        if stored.seq <= after:
            continue
        for target, about, frame in wire_messages(stored):
            if target is None and about == adw_id:
                out.append((json.loads(frame)["type"], stored.seq))
    return out


def _keys(messages: list[ServerMessage]) -> list[tuple[str, int]]:
    return [(str(m.__struct_config__.tag), getattr(m, "seq", -1)) for m in messages]


def _queued_seq(server: Running, adw_id: str) -> int:
    return next(
        e.seq for e in server.events() if e.type == "run_queued" and e.event.adw_id == adw_id
    )


async def _until(
    stream: AsyncIterator[ServerMessage], done: Callable[[ServerMessage], bool]
) -> list[ServerMessage]:
    """Messages of ``stream`` up to and including the first that is ``done``."""
    out: list[ServerMessage] = []
    while True:
        message = await asyncio.wait_for(anext(stream), T)
        out.append(message)
        if done(message):
            return out


async def _rest(stream: AsyncIterator[ServerMessage]) -> list[ServerMessage]:
    async def collect() -> list[ServerMessage]:
        return [m async for m in stream]

    return await asyncio.wait_for(collect(), T)


def _is_subscribed(message: ServerMessage) -> bool:
    return isinstance(message, Subscribed)


def _status(status: str) -> Callable[[ServerMessage], bool]:
    return lambda m: isinstance(m, StatusUpdate) and m.data.status == status


class Proxy:
    """A TCP relay to the service that can hold what the service sends
    (``freeze``) and drop every connection with what it held (``cut``)."""

    def __init__(self, port: int) -> None:
        self._target = port
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._links: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/ws/trigger"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        self.thaw()
        await self._server.wait_closed()

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def cut(self) -> None:
        for writer in self._links:
            writer.transport.abort()
        self._links.clear()

    async def _accept(self, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self._target)
        except OSError:
            down_w.transport.abort()
            return
        self._links += [down_w, up_w]
        await asyncio.gather(
            self._pump(down_r, up_w, hold=False),
            self._pump(up_r, down_w, hold=True),
            return_exceptions=True,
        )
        down_w.transport.abort()
        up_w.transport.abort()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, hold: bool
    ) -> None:
        while data := await reader.read(65536):
            if hold:
                await self._flowing.wait()
            if writer.is_closing():
                return
            writer.write(data)
            await writer.drain()
        writer.transport.abort()


def _frame(message: msgspec.Struct) -> bytes:
    return msgspec.json.encode(message)


def _subscribed(epoch: str, recovered: bool, resume_from: int) -> Subscribed:
    return Subscribed(
        SubscribedData(
            epoch=epoch,
            recovered=recovered,
            resume_from=resume_from,
            last_seq=resume_from,
            message="",
        )
    )


def _query(ws: ServerConnection) -> dict[str, str]:
    assert ws.request is not None
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(ws.request.path).query))


# --------------------------------------------------------------------------
# Against the real service


def test_replies_are_matched_to_requests_with_several_in_flight(tmp_path: Path) -> None:
    release, workflows = _sleep(tmp_path)

    async def body(server: Running) -> None:
        async with AdwdClient(server.url, **FAST) as client:
            ids = [f"many{i}" for i in range(5)]
            results = await asyncio.wait_for(
                asyncio.gather(
                    *(
                        client.trigger("adw_sleep", adw_id=i, issue_number=n)
                        for n, i in enumerate(ids)
                    ),
                    client.ping(),
                    client.trigger("adw_deploy", adw_id="bad1"),
                    client.ping(),
                    client.cancel("nobody", reason="test"),
                    client.ping(),
                    return_exceptions=True,
                ),
                T,
            )
            triggers, rejected, cancel = results[:5], results[6], results[8]
            assert [r.adw_id for r in triggers] == ids
            assert {(r.status, r.workflow_name, r.outcome) for r in triggers} == {
                ("accepted", "adw_sleep", "queued")
            }
            assert all(isinstance(results[i], float) for i in (5, 7, 9))
            assert isinstance(rejected, TriggerRejected)
            assert (rejected.data.error, rejected.data.adw_id) == (
                ErrorCode.VALIDATION_ERROR,
                "bad1",
            )
            assert (cancel.status, cancel.adw_id) == ("not_found", "nobody")

            # One run at a time: the others wait, in trigger order.
            waiting = await asyncio.wait_for(client.queue_status(), T)
            assert [q.adw_id for q in waiting][-4:] == ids[1:]
            assert [q.position for q in waiting] == list(range(1, len(waiting) + 1))

            # follow() right after trigger(): the whole run, nothing missed, in order.
            release.touch()
            run = await _rest(client.follow("many0"))
        assert _keys(run) == _expected(server, "many0", after=_queued_seq(server, "many0"))
        assert _keys(run)[-2:] == [
            ("status_update", run[-1].seq),
            ("workflow_metrics", run[-1].seq),
        ]
        assert isinstance(run[-2], StatusUpdate)
        assert run[-2].data.status == "completed"
        request_ids = [e.event.request_id for e in server.events() if e.type == "run_queued"]
        assert len(set(request_ids)) == 5
        assert all(len(r) == 32 for r in request_ids)

    with _services(tmp_path) as start:
        server = start(max_concurrent=1, workflows=workflows)
        asyncio.run(body(server))


def test_reconnects_after_a_restart_and_gets_the_later_events_without_gaps(
    tmp_path: Path,
) -> None:
    release, workflows = _sleep(tmp_path)

    async def body(start: Start) -> None:
        first = start(max_concurrent=1, workflows=workflows)
        client = AdwdClient(first.url, **FAST)
        seen = client.messages()
        async with client:
            await client.trigger("adw_sleep", adw_id="rs1")
            one = client.follow("rs1")
            await client.trigger("adw_sleep", adw_id="rs2")  # waits: one run at a time
            two = client.follow("rs2")
            await _until(one, _status("running"))

            # A restart interrupts the running run; the queued one survives it.
            await asyncio.to_thread(first.service.stop)
            end_of_one = await _rest(one)
            assert isinstance(end_of_one[-2], StatusUpdate)
            assert end_of_one[-2].data.status == "failed"
            assert end_of_one[-2].data.message.startswith("interrupted")
            release.touch()
            second = await asyncio.to_thread(
                start, port=first.service.port, max_concurrent=1, workflows=workflows
            )

            # rs2 runs on the new service; the client sees all of it, once each.
            run = await _rest(two)
            assert _keys(run) == _expected(second, "rs2", after=_queued_seq(second, "rs2"))
            assert client.connections == 2
            resumed = [(await _until(seen, _is_subscribed))[-1] for _ in range(2)]
            assert isinstance(resumed[0], Subscribed)
            assert isinstance(resumed[1], Subscribed)
            # First connect: a subscribe without since goes on from where the connection
            # is (recovered); then the resume after the restart.
            assert [m.data.recovered for m in resumed] == [True, True]
            assert client.epoch == resumed[0].data.epoch == resumed[1].data.epoch

    with _services(tmp_path) as start:
        asyncio.run(body(start))


def test_commands_issued_while_offline_are_sent_in_order_on_reconnect(tmp_path: Path) -> None:
    async def body(start: Start) -> None:
        first = start()
        async with AdwdClient(first.url, **FAST) as client:
            await asyncio.wait_for(client.ping(), T)
            await asyncio.to_thread(first.service.stop)
            await asyncio.wait_for(client.wait_connected(False), T)

            issued = [
                asyncio.create_task(client.trigger("adw_plan_iso", adw_id="off0")),
                asyncio.create_task(client.ping()),
                asyncio.create_task(client.trigger("adw_plan_iso", adw_id="off1")),
                asyncio.create_task(client.queue_status()),
                asyncio.create_task(client.trigger("adw_plan_iso", adw_id="off2")),
            ]
            second = await asyncio.to_thread(start, port=first.service.port)
            results = await asyncio.wait_for(asyncio.gather(*issued), T)
            assert [results[i].adw_id for i in (0, 2, 4)] == ["off0", "off1", "off2"]
            assert isinstance(results[1], float)
            assert isinstance(results[3], list)
            assert client.connections == 2
        queued = [e.event.adw_id for e in second.events() if e.type == "run_queued"]
        assert queued == ["off0", "off1", "off2"]

    with _services(tmp_path) as start:
        asyncio.run(body(start))


def test_a_trigger_resent_after_a_lost_reply_is_not_executed_twice(tmp_path: Path) -> None:
    release, workflows = _sleep(tmp_path)

    async def body(server: Running) -> None:
        slow = {**FAST, "heartbeat_s": 60.0}  # only the cut drops the line
        async with (
            Proxy(server.service.port) as proxy,
            AdwdClient(server.url, **FAST) as watcher,
        ):
            client = AdwdClient(proxy.url, **slow)
            seen = client.messages()
            async with client:
                await _until(seen, _is_subscribed)
                watch = watcher.follow("once1")
                proxy.freeze()  # the service's answer will not reach the client
                pending = asyncio.create_task(client.trigger("adw_sleep", adw_id="once1"))
                started = await asyncio.wait_for(anext(watch), T)
                assert isinstance(started, StatusUpdate)
                assert started.data.status == "started"
                # The run even ends before the client hears back: a plain re-trigger
                # would now start it again; a re-sent request_id must not.
                release.touch()
                end = await _rest(watch)
                assert isinstance(end[-2], StatusUpdate)
                assert end[-2].data.status == "completed"
                proxy.cut()  # the answer is lost with the line
                proxy.thaw()

                again = await asyncio.wait_for(pending, T)
                assert (again.status, again.adw_id, again.outcome) == (
                    "accepted",
                    "once1",
                    "deduplicated",
                )
                assert client.connections == 2
                waiting = await asyncio.wait_for(client.queue_status(), T)
                assert [(q.position, q.queue_length) for q in waiting] == [(0, 0)]

        events = server.events()
        queued = [e.event for e in events if e.type == "run_queued"]
        assert [q.adw_id for q in queued] == ["once1"]
        assert [e.type for e in events].count("run_started") == 1
        repeats = [e.event for e in events if e.type == "trigger_deduplicated"]
        assert [r.request_id for r in repeats] == [queued[0].request_id]

    with _services(tmp_path) as start:
        server = start(workflows=workflows)
        asyncio.run(body(server))


def test_follow_after_a_reconnect_gets_exactly_the_missed_messages_once(tmp_path: Path) -> None:
    release, workflows = _sleep(tmp_path)

    async def body(server: Running) -> None:
        async with (
            Proxy(server.service.port) as proxy,
            AdwdClient(server.url, **FAST) as watcher,
            AdwdClient(proxy.url, **{**FAST, "heartbeat_s": 60.0}) as client,
        ):
            await client.trigger("adw_sleep", adw_id="gap1")
            run = client.follow("gap1")
            got = await _until(run, _status("running"))
            watch = watcher.follow("gap1")

            proxy.freeze()
            release.touch()  # the run ends while nothing reaches the client
            await _rest(watch)
            proxy.cut()
            proxy.thaw()

            got += await _rest(run)
            assert client.connections == 2
        assert _keys(got) == _expected(server, "gap1", after=_queued_seq(server, "gap1"))
        assert len(set(_keys(got))) == len(got)

    with _services(tmp_path) as start:
        server = start(workflows=workflows)
        asyncio.run(body(server))


# --------------------------------------------------------------------------
# Against bare servers


@contextlib.asynccontextmanager
async def _bare(
    on_frame: Callable[[ServerConnection, dict[str, Any]], Awaitable[None]] | None = None,
    on_open: Callable[[ServerConnection, int], Awaitable[None]] | None = None,
) -> AsyncIterator[tuple[str, list[ServerConnection], asyncio.Queue[ServerConnection]]]:
    """A WebSocket server that says nothing unless ``on_open`` (given the
    connection's number, from 1) or ``on_frame`` (given each frame) does."""
    conns: list[ServerConnection] = []
    arrivals: asyncio.Queue[ServerConnection] = asyncio.Queue()

    async def handler(ws: ServerConnection) -> None:
        conns.append(ws)
        arrivals.put_nowait(ws)
        if on_open is not None:
            await on_open(ws, len(conns))
        async for frame in ws:
            if on_frame is not None:
                await on_frame(ws, json.loads(frame))

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/ws/trigger", conns, arrivals


def test_heartbeat_detects_a_server_that_stopped_answering() -> None:
    async def body() -> None:
        async with _bare() as (url, _conns, arrivals), AdwdClient(url, **FAST) as client:
            first = await asyncio.wait_for(arrivals.get(), T)
            # No pong: the client drops the socket and connects again by itself.
            await asyncio.wait_for(arrivals.get(), T)
            await asyncio.wait_for(first.wait_closed(), T)
            # The server sees the new connection once it has sent its handshake
            # response, the client only once it has read it: wait for the client's
            # side too (on 3.12+ the server's handler runs first every time).
            await asyncio.wait_for(client.wait_connected(), T)
            assert client.connections == 2

    asyncio.run(body())


def test_heartbeat_keeps_a_connection_whose_server_answers() -> None:
    pings: asyncio.Queue[str] = asyncio.Queue()

    async def pong(ws: ServerConnection, message: dict[str, Any]) -> None:
        if message["type"] == "ping":
            pings.put_nowait(message["request_id"])
            await ws.send(json.dumps({**message, "type": "pong", "timestamp": 0}))

    async def body() -> None:
        async with _bare(pong) as (url, conns, _), AdwdClient(url, **FAST) as client:
            for _ in range(4):
                assert (await asyncio.wait_for(pings.get(), T)).startswith("hb-")
            assert client.connections == 1
            assert len(conns) == 1

    asyncio.run(body())


def test_resume_url_boundary_seq_and_a_new_epoch() -> None:
    """A drop between a run's final status_update and its workflow_metrics (same
    seq): the client resumes from the seq before, and drops what it already had."""
    script: dict[int, list[msgspec.Struct]] = {
        1: [  # plain connect: state, then (after subscribe) subscribed and the state again
            status_update(3, "b1"),
            _subscribed("e1", False, 5),
            status_update(3, "b1"),
            status_update(6, "b1"),
            status_update(7, "b1", "completed"),
        ],
        2: [
            _subscribed("e1", True, 6),
            status_update(7, "b1", "completed"),
            workflow_metrics(7, "b1"),
        ],
        3: [_subscribed("e2", False, 2), status_update(2, "b2", "failed"), status_update(3, "b3")],
    }
    queries: list[dict[str, str]] = []

    async def play(ws: ServerConnection, n: int) -> None:
        queries.append(_query(ws))
        if n == 1:
            assert json.loads(await ws.recv())["type"] == "subscribe"
        for message in script[n]:
            await ws.send(_frame(message).decode())
        if n < 3:
            await ws.close(1011)

    async def body() -> None:
        async with _bare(on_open=play) as (url, _, _):
            client = AdwdClient(url, **{**FAST, "heartbeat_s": 60.0})
            one = client.follow("b1")
            two = client.follow("b2")
            seen = client.messages()
            async with client:
                b1 = await _rest(one)
                assert _keys(b1) == [
                    ("status_update", 3),
                    ("status_update", 6),
                    ("status_update", 7),
                    ("workflow_metrics", 7),
                ]
                assert queries[:2] == [{}, {"since": "6", "epoch": "e1"}]

                # A restored log (other epoch): its state replaces, seqs start again.
                b2 = await _rest(two)
                assert _keys(b2) == [("status_update", 2)]
                await _until(seen, lambda m: getattr(m, "seq", None) == 3 and m.data.adw_id == "b3")
                # 7 was not known complete (no higher seq came): resumed from 6 again.
                assert queries[2] == {"since": "6", "epoch": "e1"}
                assert (client.last_seq, client.epoch, client.connections) == (3, "e2", 3)

    asyncio.run(body())


def test_a_slow_iterator_stops_and_says_so() -> None:
    async def play(ws: ServerConnection, message: dict[str, Any]) -> None:
        if message["type"] == "subscribe":
            for m in [_subscribed("e", False, 0), *(status_update(s, "s1") for s in range(1, 7))]:
                await ws.send(_frame(m).decode())
        elif message["type"] == "ping":
            await ws.send(json.dumps({**message, "type": "pong", "timestamp": 0}))

    async def body() -> None:
        async with _bare(play) as (url, _, _):
            client = AdwdClient(url, queue_size=3, heartbeat_s=60.0)
            unread = client.messages()
            async with client:
                await asyncio.wait_for(client.ping(), T)  # everything before it was read
                got = [await asyncio.wait_for(anext(unread), T) for _ in range(3)]
                assert _keys(got[1:]) == [("status_update", 1), ("status_update", 2)]
                with pytest.raises(SlowConsumer) as raised:
                    await asyncio.wait_for(anext(unread), T)
                assert raised.value.last_seq == 2
                # The client itself is unaffected.
                assert client.last_seq == 6

    asyncio.run(body())


def test_an_iterator_survives_a_timed_out_wait_and_a_dropped_one_is_released() -> None:
    async def play(ws: ServerConnection, message: dict[str, Any]) -> None:
        if message["type"] == "subscribe":
            await ws.send(_frame(_subscribed("e", False, 0)).decode())
        elif message["type"] == "ping":
            await ws.send(json.dumps({**message, "type": "pong", "timestamp": 0}))

    async def body() -> None:
        async with _bare(play) as (url, _, _):
            client = AdwdClient(url, heartbeat_s=60.0)
            stream = client.messages()
            async with client:
                assert isinstance(await asyncio.wait_for(anext(stream), T), Subscribed)
                with pytest.raises(TimeoutError):  # nothing comes until the ping below
                    await asyncio.wait_for(anext(stream), 0.05)
                await asyncio.wait_for(client.ping(), T)
                assert isinstance(await asyncio.wait_for(anext(stream), T), Pong)

                feeds = len(client._feeds)
                dropped = client.follow("gone")
                assert len(client._feeds) == feeds + 1
                del dropped
                gc.collect()
                assert len(client._feeds) == feeds

    asyncio.run(body())


def test_request_timeout_close_and_connect_errors() -> None:
    async def body() -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            free = s.getsockname()[1]
        nowhere = AdwdClient(f"ws://127.0.0.1:{free}/ws/trigger")
        with pytest.raises(ClientError, match="connect"):
            await nowhere.ping()
        with pytest.raises(ConnectFailed) as failed:
            await nowhere.connect()
        assert isinstance(failed.value, ConnectionError)

        frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def record(ws: ServerConnection, message: dict[str, Any]) -> None:
            frames.put_nowait(message)

        async with _bare(record) as (url, _, _):
            client = AdwdClient(url, heartbeat_s=60.0, request_timeout_s=0.3)
            async with client:
                with pytest.raises(RequestTimeout):
                    await client.ping()
            # Closing fails what is pending and ends the iterators.
            client = AdwdClient(url, heartbeat_s=60.0, request_timeout_s=None)
            await client.connect()
            everything = client.messages()
            run = client.follow("x1")
            pending = asyncio.create_task(client.trigger("adw_plan_iso", adw_id="x1"))
            while (await asyncio.wait_for(frames.get(), T))["type"] != "trigger_workflow":
                pass  # the trigger is out, its answer pending
            await client.close()
            with pytest.raises(ClientClosed):
                await pending
            assert await _rest(everything) == []
            with pytest.raises(ClientClosed):
                await anext(run)
            with pytest.raises(ClientClosed):
                await client.ping()

    asyncio.run(body())
