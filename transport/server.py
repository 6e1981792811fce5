"""TransportActor: owns the websockets server on its own asyncio thread.

The loop holds every socket and never blocks: each inbound frame is handed
to the connection's ConnectionActor with ``tell``; actors hand frames back
with ``loop.call_soon_threadsafe``. WebSocket clients connect to
``/ws/trigger`` or ``/ws``; every other request is plain HTTP, read and
answered by ``http_api`` (this actor supplies the read endpoints' answers).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import secrets
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, cast

import pykka
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from adwd.actors.auth import Authenticator, Principal, SecurityConfig
from adwd.actors.base import Actor
from adwd.actors.connection import ConnectionActor
from adwd.actors.dispatch import Dispatcher
from adwd.actors.guard import Guard
from adwd.actors.messages import Append, Inbound, RouteOutcome
from adwd.actors.monitor import Report
from adwd.actors.owners import RunOwners, owners
from adwd.actors.router import Router
from adwd.actors.telemetry import CONTENT_TYPE, Telemetry
from adwd.events import domain
from adwd.events.codec import encode
from adwd.events.errors import AdwdError, CloseCode, ErrorCode, StoreError
from adwd.events.store import EventStore, NewEvent, StoredEvent
from adwd.events.wire import Error, ErrorData, SubscribeData
from adwd.transport.board_api import BoardCall
from adwd.transport.board_rest import BoardRest
from adwd.transport.catchup import Readers, catch_up
from adwd.transport.deflate import DEFAULT_MIN_SIZE, server_extensions
from adwd.transport.handshake import HandshakeGuard, select_subprotocol
from adwd.transport.http_api import Backend, HttpAwareConnection, Reply, Unavailable, error
from adwd.transport.monitoring import Followers, interval_params

log = logging.getLogger(__name__)

FAIL_CLOSE_S = 5.0  # how long a connection whose actor died waits for its supervised close


class TransportError(AdwdError):
    """The server could not listen (address in use, permission...)."""


class TransportActor(Actor):
    """Runs the asyncio loop thread and bridges it to the actors."""

    KIND = "transport"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        scheduler: pykka.ActorRef[pykka.Actor],
        event_log: pykka.ActorRef[pykka.Actor],
        projector: pykka.ActorRef[pykka.Actor],
        events_path: Path,
        workflow_types: frozenset[str],
        max_outbound_bytes: int,
        compression: str = "deflate",
        compression_min_bytes: int = DEFAULT_MIN_SIZE,
        connection_threads: int = 2,
        fault_injection: bool = False,
        is_fatal: Callable[[], bool] = lambda: False,
        telemetry: Telemetry | None = None,
        health_interval_s: float = 0.0,
        performance_interval_s: float = 0.0,
        quality_interval_s: float = 0.0,
        ping_interval_s: float = 20.0,
        ping_timeout_s: float = 20.0,
        security: TransportSecurity | None = None,
    ) -> None:
        super().__init__()
        # Security (docs/security.md): None keeps today's behaviour (loopback, no auth).
        self._security = security or TransportSecurity()
        self._guard: HandshakeGuard | None = None
        self._host = host
        self._port = port
        self._scheduler = scheduler
        self._event_log = event_log
        self._projector = projector
        # One proxy, made once: pykka introspects the actor for every new proxy.
        self._ask_projector = projector.proxy()
        self._readers = Readers(events_path)
        self._events_path = events_path
        self._board_rest = BoardRest(
            scheduler=scheduler, projector=projector, event_log=event_log, events_path=events_path
        )
        self._extensions = server_extensions(compression, compression_min_bytes)
        self._connection_threads = connection_threads
        self._fault_injection = fault_injection
        self._is_fatal = is_fatal
        self._draining = False
        self._dispatcher: Dispatcher | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._workflow_types = workflow_types
        self._router = Router(max_outbound_bytes)
        # Monitoring (issue 12): health_status / performance_metrics followers, /metrics.
        self._telemetry = telemetry
        if telemetry is not None:
            telemetry.count_sent(lambda: self._router.sent)
            telemetry.count_connections(self._router.__len__, self._router.unsent_total)
        self._ping_interval_s, self._ping_timeout_s = ping_interval_s, ping_timeout_s
        self._followers = Followers(
            self._router,
            health_s=health_interval_s,
            performance_s=performance_interval_s,
            quality_s=quality_interval_s,
            ping_timeout_s=ping_timeout_s,
            max_outbound_bytes=max_outbound_bytes,
        )
        self._loop = asyncio.new_event_loop()
        self._server: Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="adwd-loop")
        self._started_at = time.monotonic()
        self.port = 0

    def on_start(self) -> None:
        """Start the connection actors' dispatcher and the loop thread, listen, follow the log."""
        self._dispatcher = Dispatcher(self._connection_threads, name="adwd-conn")
        self._thread.start()
        # Follow the log, then read who owns each run from it, before any client
        # can connect: a scoped principal sees its runs from before this start, and
        # nothing committed between the read and the subscribe is missed (what both
        # saw is the same fact twice; the router keeps the newest).
        self._event_log.proxy().subscribe(self._publish, first=True).get()
        self._loop.call_soon_threadsafe(self._router.seed, self._owners())
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        try:
            self._server = future.result(timeout=10)
        except OSError as exc:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            raise TransportError(
                f"Cannot listen on {self._host}:{self._port}: {exc.strerror or exc}. "
                "Choose another --port or stop the process using it."
            ) from exc
        self.port = self._server.sockets[0].getsockname()[1]
        loop, router = self._loop, self._router
        # send_readable: nothing of the runs to a connection that may not read them.
        self._projector.proxy().attach(
            lambda frames: loop.call_soon_threadsafe(router.send_readable, frames)
        ).get()

    async def _listen(self) -> Server:
        sec = self._security
        if sec.config.auth_on or sec.config.limits_on:
            self._guard = HandshakeGuard(sec.config, sec.authenticator, self._audit)
        extra: dict[str, Any] = {}
        if self._guard is not None:
            extra["process_request"] = self._guard.process_request
        return await serve(
            self._handle,
            self._host,
            self._port,
            # Keepalive pings find dead peers; they close with 1011, never 1000. Their
            # round trips are connection_quality's latency (transport/monitoring.py).
            ping_interval=self._ping_interval_s or None,
            ping_timeout=self._ping_timeout_s or None,
            max_size=1024 * 1024,
            origins=sec.origins,
            select_subprotocol=select_subprotocol,
            ssl=sec.ssl,
            compression=None,  # permessage-deflate comes from self._extensions
            extensions=self._extensions,
            # Each connection's first request is read by http_api: a WebSocket upgrade
            # goes on to websockets, every other request is answered there.
            # websockets types this as the class but only calls it: a partial is enough.
            create_connection=cast(
                "type[ServerConnection]",
                functools.partial(
                    HttpAwareConnection,
                    backend=Backend(
                        read=self._http_answer,
                        route=self._route_update,
                        board=self._board,  # the board's REST calls (issue 14)
                        authorize=self._guard.authorize_http if self._guard else None,
                    ),
                ),
            ),
            **extra,
        )

    # -- security (issue 13): audit events, the guard's outbox calls -----------

    def _audit(self, event: domain.DomainEvent, connection_id: str, principal: str) -> None:
        """Record a security event (loop thread; a tell, never a wait)."""
        stream = domain.connection_stream(connection_id) if connection_id else domain.SYSTEM_STREAM
        with contextlib.suppress(pykka.ActorDeadError):
            self._event_log.tell(Append([NewEvent(stream, event, principal=principal)]))

    def _route_update(
        self, adw_id: str, message: object, token: str | None, local: bool
    ) -> RouteOutcome:
        """Called in an executor thread by the HTTP endpoints: ask the scheduler."""
        try:
            outcome: RouteOutcome = (
                self._scheduler.proxy().route_update(adw_id, message, token, local).get(timeout=10)
            )
        except (pykka.ActorDeadError, pykka.Timeout) as exc:
            raise Unavailable(
                "The scheduler did not answer: adwd is stopping or overloaded. Retry shortly."
            ) from exc
        return outcome

    def _snapshot(self, adw_ids: frozenset[str] | None) -> tuple[int, list[bytes]]:
        """The projector's current state of the runs followed (called off the loop)."""
        try:
            result: tuple[int, list[bytes]] = self._ask_projector.snapshot(adw_ids).get(timeout=30)
        except (pykka.ActorDeadError, pykka.Timeout):  # shutting down
            return 0, []
        return result

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("catch-up failed", exc_info=task.exception())

    def _publish(self, batch: Sequence[StoredEvent]) -> None:
        """Called by the EventLogActor after each commit."""
        with contextlib.suppress(RuntimeError):  # the loop closed: a failed start, stopping
            self._loop.call_soon_threadsafe(self._router.publish, batch)

    def _owners(self) -> RunOwners:
        """Each run's (workflow_type, principal) from the log's ``run_queued`` events
        (the newest MAX_RUNS; a linear read at start, measured in docs/security.md)."""
        if not self._events_path.exists():
            return RunOwners()
        try:
            store = EventStore(self._events_path, readonly=True)
        except StoreError as exc:
            log.warning("run owners not read (scoped principals see new runs only): %s", exc)
            return RunOwners()
        try:
            return owners(store.read(types=["run_queued"]))
        except StoreError as exc:
            log.warning("run owners not read (scoped principals see new runs only): %s", exc)
            return RunOwners()
        finally:
            store.close()

    def _shown(self, scope: Principal | None) -> Callable[[str], bool] | None:
        """Whether an adw_id is within ``scope``'s grant (None: every one is), asked of
        the router's table of each run's type and owner. Loop thread only: called
        after the answer's own awaits, one lookup per adw_id the answer holds."""
        if scope is None:
            return None
        router = self._router
        return lambda adw_id: router.within(adw_id, scope)

    async def _board(self, call: BoardCall, scope: Principal | None) -> Reply:
        """A board REST call, within ``scope``'s grant (None: every run)."""
        return await self._board_rest.answer(call, self._shown(scope))

    async def _http_answer(self, path: str, scope: Principal | None = None) -> Reply:
        """What a GET of ``path`` answers: health, readiness and the read API, with
        only the runs within ``scope``'s grant (None: every run); a run outside it
        is answered as if it did not exist. (http_api reads the request, checks
        who sent it, and writes this reply, CORS included.)"""
        loop = asyncio.get_running_loop()
        shown = self._shown(scope)

        async def ask(call: Callable[[Any], Any]) -> Any:
            # The projector answers in its own thread; wait for it off the loop.
            try:
                future = call(self._ask_projector)
                return await loop.run_in_executor(None, functools.partial(future.get, timeout=10))
            except (pykka.ActorDeadError, pykka.Timeout) as exc:
                raise Unavailable(
                    "The read API did not answer: adwd is stopping or overloaded. Retry shortly."
                ) from exc

        if path in ("/readyz", "/livez"):
            checks = self.readiness() if path == "/readyz" else {"process": True}
            ok = all(checks.values())
            status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
            return Reply(status, {"status": "ok" if ok else "unavailable", "checks": checks})
        if path == "/health":
            return Reply(HTTPStatus.OK, {**self._health(), **await ask(lambda p: p.health())})
        if path == "/metrics" and self._telemetry is not None:
            return Reply(HTTPStatus.OK, self._telemetry.render(), (("Content-Type", CONTENT_TYPE),))
        if path == "/api/runs":
            overview = await ask(lambda p: p.overview())
            if shown is not None:
                overview["runs"] = [r for r in overview["runs"] if shown(r["adw_id"])]
                overview["queue"] = [q for q in overview["queue"] if shown(q["adw_id"])]
                overview["metrics"] = None  # figures of every run: not within a scope
            return Reply(HTTPStatus.OK, overview)
        if path.startswith("/api/adws/"):
            adw_id = urllib.parse.unquote(path.removeprefix("/api/adws/"))
            # Asked either way: "not yours" must take as long as "none".
            state = await ask(lambda p: p.adw_state(adw_id))
            if state is None or (shown is not None and not shown(adw_id)):
                return error(
                    HTTPStatus.NOT_FOUND,
                    ErrorCode.NOT_FOUND,
                    f"No run has adw_id {adw_id!r}. Trigger one first.",
                )
            return Reply(HTTPStatus.OK, state)
        return error(
            HTTPStatus.NOT_FOUND,
            ErrorCode.NOT_FOUND,
            f"Nothing at {path}. Open a WebSocket to /ws/trigger, or GET /health, /livez, "
            "/readyz, /metrics, /api/runs or /api/adws/<adw_id>.",
        )

    def _health(self) -> dict[str, Any]:
        """/health: the monitor's status by its rules (docs/operations.md), unhealthy
        at once while the service is not ready, and the firing alerts."""
        report = self._followers.report
        status = report.health.status if report is not None else "healthy"
        if not all(self.readiness().values()):
            status = "unhealthy"
        return {
            "status": status,
            "active_connections": len(self._router),
            "uptime": round(time.monotonic() - self._started_at, 3),
            "alerts": report.firing if report is not None else [],
        }

    def monitor_sink(self) -> Callable[[Report], None]:
        """What the MonitorActor calls with each report (its thread): hands it to the loop."""
        loop, followers = self._loop, self._followers

        def deliver(report: Report) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: stopping
                loop.call_soon_threadsafe(followers.update, report)

        return deliver

    def fail_all(self, reason: str) -> None:
        """The service stops because it failed: tell every client why, close with 1011."""
        error = ErrorData(
            message=f"adwd is stopping: {reason}. Reconnect once it is back and resume "
            "from your last seq.",
            code=ErrorCode.UNAVAILABLE,
        )
        frame = encode(Error(error))
        self._draining = True
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._router.send_all, frame)
        self._shut_down(CloseCode.INTERNAL_ERROR, "service failed; reconnect shortly")

    def on_loop(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the server's loop thread, between two handshakes (a TLS
        reload must not change the context under one in progress)."""
        with contextlib.suppress(RuntimeError):  # the loop closed: stopping
            self._loop.call_soon_threadsafe(fn)

    def connection_count_fn(self) -> Callable[[], int]:
        """How the monitor and /metrics count connections from any thread (a dict's
        length: one atomic read under the GIL)."""
        return self._router.__len__

    def connection_count(self) -> int:
        """Connections the router delivers to now."""
        return len(self._router)

    def readiness(self) -> dict[str, bool]:
        """What /readyz checks: each core actor alive, the log writable, not draining."""
        return {
            "event_log": self._event_log.is_alive() and not self._is_fatal(),
            "scheduler": self._scheduler.is_alive(),
            "projector": self._projector.is_alive(),
            "transport": not self.actor_stopped.is_set(),
            "accepting": not self._draining,
        }

    async def _handle(self, ws: ServerConnection) -> None:
        connection_id, guard, address = secrets.token_hex(6), None, ""
        if self._guard is not None:
            admitted = self._guard.admitted(ws)
            connection_id, address = admitted.connection_id, admitted.address
            guard = Guard(
                config=self._security.config,
                authenticator=self._guard.authenticator,
                connection_id=connection_id,
                address=address,
                principal=admitted.principal,
                principal_limits=self._guard.principal_limits,
            )
        since, epoch = _resume_params(ws.request.path if ws.request else "")
        # paused until its catch-up is done; unreadable until the guard allows it
        self._router.add(
            connection_id,
            ws,
            readable=guard is None or guard.may_read(),
            scope=guard.scope() if guard is not None else None,
            monitor=guard is None or guard.may_monitor(),
        )
        self._followers.add(
            connection_id, ws, interval_params(ws.request.path if ws.request else "")
        )
        outbox = _LoopOutbox(self, connection_id)
        outbox.address = address
        assert self._dispatcher is not None
        # The connection's own actor: its frames, in order, and its principal.
        actor = ConnectionActor.start(
            dispatcher=self._dispatcher,
            connection_id=connection_id,
            outbox=outbox,
            since=since,
            epoch=epoch,
            scheduler=self._scheduler,
            projector=self._projector,
            event_log=self._event_log,
            transport=self.actor_ref,
            workflow_types=self._workflow_types,
            fault_injection=self._fault_injection,
            telemetry=self._telemetry,
            guard=guard,
        )
        try:
            # Commands wait until the connection is up to date: a run it triggers
            # then starts after its snapshot, so the client sees the run's every
            # event (started...), never a state that already folded them in.
            # (websockets answers protocol pings meanwhile; frames wait in its buffer.)
            closed = asyncio.ensure_future(ws.wait_closed())
            try:
                await asyncio.wait([outbox.ready, closed], return_when=asyncio.FIRST_COMPLETED)
            finally:
                closed.cancel()
            async for frame in ws:
                # A subscribe must not let live messages slip ahead of its replay:
                # pause here, before the actor even decodes it.
                paused = b"subscribe" in frame if isinstance(frame, bytes) else "subscribe" in frame
                if paused:
                    self._router.pause(connection_id)
                self._followers.received(connection_id, len(frame))
                actor.tell(Inbound(connection_id, frame, paused))
        except ConnectionClosed:
            pass
        except pykka.ActorDeadError:
            # Its actor failed: its supervision (on_failure) sends the error and
            # closes with 1011 through the outbox. Wait for that; close here only
            # if it does not come (the service is stopping).
            try:
                await asyncio.wait_for(ws.wait_closed(), FAIL_CLOSE_S)
            except TimeoutError:
                await ws.close(CloseCode.INTERNAL_ERROR, "internal error; reconnect and resume")
        finally:
            self._router.remove(connection_id)
            self._followers.remove(connection_id)
            actor.stop(block=False)  # after the frames already in its mailbox
            if guard is not None:
                ended = domain.ConnectionClosed(
                    connection_id=connection_id,
                    address=address,
                    code=ws.close_code,
                    reason=(ws.close_reason or "")[:200],
                )
                self._audit(ended, connection_id, guard.user_id)

    # -- shutdown, called from the service's thread through the proxy ------

    def stop_accepting(self) -> None:
        """Close the listening sockets; open connections stay. /readyz says 503 from now."""
        self._draining = True
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.server.close)

    def on_stop(self) -> None:
        """Close every connection with 1001 (after what is queued for it), stop the loop."""
        self._shut_down(CloseCode.GOING_AWAY, "service shutting down")

    def on_failure(self, *exc_info: Any) -> None:
        """Supervision: close every connection with 1011 and stop the loop (no thread
        of a dead transport may keep the process alive), then tell the supervisor."""
        self._draining = True
        try:
            self._shut_down(CloseCode.INTERNAL_ERROR, "internal error; reconnect shortly")
        finally:
            super().on_failure(*exc_info)

    def _shut_down(self, code: CloseCode, reason: str) -> None:
        if self._loop.is_closed():
            return
        if self._server is not None and self._thread.is_alive():
            close = self._close_all(code, reason)
            asyncio.run_coroutine_threadsafe(close, self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._loop.close()
        self._readers.close()
        if self._dispatcher is not None:
            self._dispatcher.stop()

    async def _close_all(self, code: CloseCode, reason: str) -> None:
        assert self._server is not None
        self._server.close(code=code, reason=reason)
        await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class _LoopOutbox:
    """A connection's Outbox: every call returns at once; the work runs on the loop.

    Catch-ups of one connection run one after another (a subscribe during the
    first catch-up waits for it), so their frames never interleave.
    """

    def __init__(self, transport: TransportActor, cid: str) -> None:
        self._t, self._cid = transport, cid
        self.address = ""  # the peer's, for limits on failed authentication
        self._last: asyncio.Task[None] | None = None
        self.ready: asyncio.Future[None] = transport._loop.create_future()  # first catch-up done

    def send(self, frame: bytes) -> None:
        self._t._loop.call_soon_threadsafe(self._t._router.send_to, self._cid, frame)

    def fail(self, frame: bytes) -> None:
        self._t._loop.call_soon_threadsafe(self._t._router.fail, self._cid, frame)

    def catch_up(self, want: SubscribeData, *, explicit: bool, request_id: str | None) -> None:
        self._t._loop.call_soon_threadsafe(self._start, want, explicit, request_id)

    def resume(self, upto: int) -> None:
        self._t._loop.call_soon_threadsafe(self._t._router.resume, self._cid, upto)

    def remove_adw(self, adw_id: str, done: Callable[[dict[str, Any]], None]) -> None:
        self._t._loop.call_soon_threadsafe(self._remove, adw_id, done)

    def _remove(self, adw_id: str, done: Callable[[dict[str, Any]], None]) -> None:
        async def run() -> None:
            try:
                reply = await self._t._board_rest.answer(BoardCall("delete", adw_id))
                body = reply.body if isinstance(reply.body, dict) else {}
            except Exception as exc:  # an answer, always: the connection waits for it
                body = {"success": False, "error": type(exc).__name__, "message": str(exc)}
            done(body)

        task = self._t._loop.create_task(run())
        self._t._tasks.add(task)
        task.add_done_callback(self._t._task_done)

    # -- security (actors/guard.py) --------------------------------------------

    def open_unread(self) -> None:
        self._t._loop.call_soon_threadsafe(self._open_unread)

    def _open_unread(self) -> None:
        self._t._router.resume(self._cid, 0)
        if not self.ready.done():
            self.ready.set_result(None)

    def grant_read(
        self, want: SubscribeData, *, explicit: bool, scope: Principal | None = None
    ) -> None:
        self._t._loop.call_soon_threadsafe(self._grant_read, want, explicit, scope)

    def _grant_read(self, want: SubscribeData, explicit: bool, scope: Principal | None) -> None:
        router = self._t._router
        router.set_readable(self._cid, True, scope)
        router.pause(self._cid)
        self._start(want, explicit, None)

    def grant_monitor(self) -> None:
        self._t._loop.call_soon_threadsafe(self._t._router.set_monitor, self._cid)

    def close(self, code: int, reason: str) -> None:
        self._t._loop.call_soon_threadsafe(self._t._router.close, self._cid, code, reason)

    def later(self, delay: float, callback: Callable[[], None]) -> None:
        self._t._loop.call_soon_threadsafe(self._t._loop.call_later, delay, callback)

    def within(self, adw_id: str, scope: Principal, answer: Callable[[bool], None]) -> None:
        router = self._t._router
        self._t._loop.call_soon_threadsafe(lambda: answer(router.within(adw_id, scope)))

    def auth_failed(self) -> None:
        guard = self._t._guard
        if guard is not None:
            self._t._loop.call_soon_threadsafe(guard.auth_failed, self.address)

    def _start(self, want: SubscribeData, explicit: bool, request_id: str | None) -> None:
        chosen = (want.health_interval_s, want.performance_interval_s, want.quality_interval_s)
        self._t._followers.choose(self._cid, chosen)
        previous = self._last

        async def run() -> None:
            if previous is not None:
                await asyncio.wait([previous])
            try:
                await catch_up(
                    self._t._router,
                    self._cid,
                    want,
                    explicit=explicit,
                    request_id=request_id,
                    readers=self._t._readers,
                    snapshot=self._t._snapshot,
                    visible=self._t._router.visible(self._cid),
                )
            finally:
                if not self.ready.done():
                    self.ready.set_result(None)

        task = self._last = self._t._loop.create_task(run())
        self._t._tasks.add(task)
        task.add_done_callback(self._t._task_done)


@dataclass(frozen=True)
class TransportSecurity:
    """What the transport needs of the security config (service/security.py builds it)."""

    config: SecurityConfig = field(default_factory=SecurityConfig)
    authenticator: Authenticator | None = None
    origins: Sequence[Origin | re.Pattern[str] | None] | None = None  # None: any origin
    ssl: ssl.SSLContext | None = None


def _resume_params(path: str) -> tuple[int | None, str | None]:
    """``since`` and ``epoch`` from ``/ws/trigger?since=N&epoch=E`` (ignored if malformed)."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
    since = query.get("since", [""])[0]
    epoch = query.get("epoch", [None])[0]
    return (int(since) if since.isascii() and since.isdigit() else None), epoch
