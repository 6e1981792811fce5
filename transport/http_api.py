"""Every plain HTTP request on the WebSocket port, parsed by h11 and answered here.

The seam is a ``ServerConnection`` subclass (websockets' ``create_connection``
hook): it feeds the first bytes of each connection to an :class:`HttpExchange`
(h11, sans-I/O: bytes in, a decision out; a :class:`Reply` in, bytes out).
Once the head of the first request is read, a WebSocket upgrade (``GET /ws``
or ``GET /ws/trigger`` with ``Upgrade: websocket``) goes, bytes unchanged, to
websockets, which does the handshake; every other request (``GET``, ``HEAD``,
``POST``, ``OPTIONS``...) is answered by :func:`answer`, and the connection is
closed after the reply (``Connection: close``: one request per connection).

Here, once: the JSON encoder, the CORS headers, the error body
(``{"error": <ErrorCode>, "message": ...}``), the size limits (413 and 431,
``validation_error``), what a failure answers (500 ``internal``, 503
``unavailable``). The transport supplies what the answers need
(:class:`Backend`): the read endpoints' answers (health, readiness, the read
API: ``TransportActor._http_answer``) and the routing of a run's own update.

Why h11 and not websockets' parser: ``websockets.http11.Request.parse`` reads
the opening handshake only (no ``Transfer-Encoding``, a ``Content-Length`` of 0
at most, 128 headers), and ``process_request`` runs inside the handshake with
no way to read a body; extending it would mean replacing its parser, that is,
writing and keeping our own HTTP parser again.

Update endpoints (for existing ADW scripts): ``POST /api/workflow-updates`` and
``POST /api/stage-event``, accepted for runs that are running, from loopback
or with the run's token (``Authorization: Bearer $ADWD_RUN_TOKEN``).
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import ipaddress
import logging
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, NamedTuple, assert_never, cast

import h11
import msgspec
from websockets.asyncio.server import ServerConnection
from websockets.http11 import SERVER

from adwd.actors.agentstream import notifier_activity, posted_activity
from adwd.actors.auth import Principal
from adwd.actors.messages import AgentReport, LogLine, Progress, RouteOutcome, StageReport
from adwd.events.errors import AdwdError, ErrorCode
from adwd.events.http import (
    StatusUpdatePost,
    agent_body_decoders,
    agent_state_decoder,
    output_chunk_decoder,
    phase_transition_decoder,
    screenshot_decoder,
    spec_created_decoder,
    stage_event_decoder,
    workflow_update_decoder,
)
from adwd.projections.stages import STAGES
from adwd.transport.board_api import BoardCall
from adwd.transport.board_api import route as board_route

log = logging.getLogger(__name__)

WS_PATHS = frozenset({"/ws/trigger", "/ws"})
UPDATE_PATHS = ("/api/workflow-updates", "/api/stage-event")
# The notifier's agent activity endpoints (issue 14): same authorisation as the above.
AGENT_PATHS = (
    "/api/agent-state-update",
    "/api/workflow-phase-transition",
    "/api/agent-output-chunk",
    "/api/screenshot-available",
    "/api/spec-created",
)
# Boards served from this machine: localhost, its addresses, and the *.localhost names the
# board uses behind its proxy (http://<adw_id>.localhost, http://api.<adw_id>.localhost).
LOCAL_ORIGIN = re.compile(
    r"https?://(localhost|127\.0\.0\.1|\[::1\]|([a-z0-9-]+\.)+localhost)(:\d+)?", re.IGNORECASE
)
MAX_BODY = 1024 * 1024
MAX_HEAD = 65536  # request line and headers
LINGER_S = 2.0  # after refusing a request not read whole: how long to drain it before closing
# websockets aborts a connection that has not opened within its open_timeout (10 s from
# the connect), an HTTP exchange included: an answer gets this long, or a 503.
ANSWER_S = 8.0

_encode = msgspec.json.Encoder().encode  # the one encoder of every HTTP body


class Reply(NamedTuple):
    """What a request gets: a status, a JSON body (``None``: none), extra headers.
    A ``bytes`` body is sent as it is, with the Content-Type the headers give
    (/metrics: Prometheus text)."""

    status: HTTPStatus
    body: object = None
    headers: tuple[tuple[str, str], ...] = ()


class Unavailable(AdwdError):
    """Raised by a backend that cannot answer now (an actor stopped or did not answer)."""


# (A GET path, the scope) -> its answer (health, readiness, the read API); on the loop.
# The scope: the principal whose grant limits the runs shown (None: every run).
Read = Callable[[str, Principal | None], Awaitable[Reply]]
# (A board REST call (transport/board_api.py), the scope) -> its answer; on the loop.
Board = Callable[["BoardCall", Principal | None], Awaitable[Reply]]
# (request, peer address, from loopback) -> a refusal, or the scope to answer it in.
Authorize = Callable[["HttpRequest", str, bool], "Reply | Principal | None"]
# (adw_id, message for the run's actor, bearer token, from loopback) -> what came of it.
# Blocking: called in an executor thread.
Route = Callable[[str, object, str | None, bool], RouteOutcome]


@dataclass(frozen=True, slots=True)
class Backend:
    """What the answers need from the transport."""

    read: Read
    route: Route
    board: Board | None = None  # None: the board's REST calls are not served
    # Security (docs/security.md): who may read and delete; None: anyone (auth off).
    authorize: Authorize | None = None


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A request read whole: header names in lower case, the path without its query."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes = b""
    query: str = ""  # the target's query string, without "?"


# What HttpExchange.receive decides (None: nothing yet, send more bytes).
@dataclass(frozen=True, slots=True)
class Upgrade:
    """A WebSocket upgrade: hand ``data`` (every byte so far) to websockets."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Continue:
    """The client waits for ``100 Continue`` before its body: write ``data``, read on."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Ready:
    """A request read whole: answer it, then write ``HttpExchange.respond``'s bytes."""

    request: HttpRequest


@dataclass(frozen=True, slots=True)
class Refused:
    """An error reply before the request was read whole: write ``data``, then close."""

    data: bytes


Step = Upgrade | Continue | Ready | Refused | None


def error_body(code: ErrorCode, message: str) -> dict[str, str]:
    """The body of every HTTP error: the same codes as the WebSocket ``error``."""
    return {"error": code.value, "message": message}


def error(
    status: HTTPStatus, code: ErrorCode, message: str, headers: tuple[tuple[str, str], ...] = ()
) -> Reply:
    """An error reply: ``status`` with the one error body."""
    return Reply(status, error_body(code, message), headers)


def cors(origin: str | None, *, preflight: bool) -> list[tuple[str, str]]:
    """The CORS headers: boards served from localhost (any port) may call the API."""
    if origin is None or not LOCAL_ORIGIN.fullmatch(origin):
        return []
    headers = [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
    if preflight:
        headers += [
            ("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS"),
            ("Access-Control-Allow-Headers", "Content-Type, Authorization"),
            ("Access-Control-Max-Age", "600"),
        ]
    return headers


class HttpExchange:
    """The first request of one connection, sans-I/O (h11 does the parsing).

    ``receive`` takes bytes as they come and says what to do (:data:`Step`);
    ``respond`` turns the reply into bytes. One request, one reply: the
    connection is closed after it.
    """

    def __init__(self, *, max_head: int = MAX_HEAD, max_body: int = MAX_BODY) -> None:
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head)
        self._max_head, self._max_body = max_head, max_body
        self._seen: bytearray | None = bytearray()  # until the head is read: websockets' bytes
        self._head: h11.Request | None = None
        self._body = bytearray()
        self._decided = False

    def receive(self, data: bytes) -> Step:
        """Feed bytes from the peer; what to do now (``None``: wait for more)."""
        if self._decided:
            return None  # answered or refused; what follows is dropped
        if self._seen is not None:
            self._seen += data
        self._h11.receive_data(data)
        while not self._decided:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                return self._refuse(self._unreadable(exc))
            if event is h11.NEED_DATA:
                if self._h11.they_are_waiting_for_100_continue:
                    continue_ = h11.InformationalResponse(
                        status_code=100, headers=[], reason="Continue"
                    )
                    return Continue(self._send(continue_))
                return None
            # h11's sentinels are classes, which mypy does not narrow by identity:
            # NEED_DATA was handled above.
            step = self._take(cast("h11.Event | type[h11.PAUSED]", event))
            if step is not None:
                return step
        return None

    def _take(self, event: h11.Event | type[h11.PAUSED]) -> Step:
        """One h11 event of the request."""
        if isinstance(event, h11.Request):
            self._head, seen, self._seen = event, bytes(self._seen or b""), None
            if _is_websocket_upgrade(event):
                self._decided = True
                return Upgrade(seen)
            if _content_length(event) > self._max_body:
                return self._refuse(self._too_large())
        elif isinstance(event, h11.Data):
            self._body += event.data
            if len(self._body) > self._max_body:
                return self._refuse(self._too_large())
        elif isinstance(event, h11.EndOfMessage):
            assert self._head is not None
            self._decided = True
            return Ready(self._request(self._head))
        else:  # ConnectionClosed, PAUSED: no request to answer
            self._decided = True
        return None

    def respond(self, reply: Reply) -> bytes:
        """The bytes of ``reply``: JSON body, CORS for the request's origin, then close."""
        head = self._head
        method = head.method if head is not None else b""
        body = reply.body
        raw = isinstance(body, bytes)
        payload = b"" if body is None else body if isinstance(body, bytes) else _encode(body)
        headers = [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Server", SERVER),
            ("Connection", "close"),
        ]
        if reply.status != HTTPStatus.NO_CONTENT:
            headers.append(("Content-Length", str(len(payload))))
        if payload and not raw:
            headers.append(("Content-Type", "application/json"))
        headers += reply.headers
        origin = _header(head, b"origin") if head is not None else None
        headers += cors(origin, preflight=method == b"OPTIONS")
        status = reply.status
        data = self._send(h11.Response(status_code=status, reason=status.phrase, headers=headers))
        if payload and method != b"HEAD" and status != HTTPStatus.NO_CONTENT:
            data += self._send(h11.Data(data=payload))
        return data + self._send(h11.EndOfMessage())

    def _send(self, event: h11.Event) -> bytes:
        return self._h11.send(event) or b""

    def _refuse(self, reply: Reply) -> Refused:
        self._decided = True
        return Refused(self.respond(reply))

    def _unreadable(self, exc: h11.RemoteProtocolError) -> Reply:
        if exc.error_status_hint == HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE:
            return error(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                ErrorCode.VALIDATION_ERROR,
                f"Headers over {self._max_head} bytes.",
            )
        return error(
            HTTPStatus.BAD_REQUEST,
            ErrorCode.VALIDATION_ERROR,
            f"Not an HTTP/1.1 request adwd can read: {str(exc)[:200]}.",
        )

    def _too_large(self) -> Reply:
        return error(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            ErrorCode.VALIDATION_ERROR,
            f"Body over {self._max_body} bytes; send smaller updates.",
        )

    def _request(self, head: h11.Request) -> HttpRequest:
        headers: dict[str, str] = {}
        for name, value in head.headers:
            key, text = name.decode("latin-1"), value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        return HttpRequest(
            method=head.method.decode("latin-1"),
            path=_path(head.target),
            headers=headers,
            body=bytes(self._body),
            query=urllib.parse.urlsplit(head.target.decode("latin-1")).query,
        )


def _path(target: bytes) -> str:
    return urllib.parse.urlsplit(target.decode("latin-1")).path


def _header(head: h11.Request, name: bytes) -> str | None:
    values = [value for key, value in head.headers if key == name]
    return b", ".join(values).decode("latin-1") if values else None


def _content_length(head: h11.Request) -> int:
    length = _header(head, b"content-length")  # h11 has checked it is one number
    return int(length) if length else 0


def _is_websocket_upgrade(head: h11.Request) -> bool:
    """A request for websockets: ``GET`` of a WebSocket path with ``Upgrade: websocket``."""
    upgrade = (_header(head, b"upgrade") or "").lower()
    return head.method == b"GET" and _path(head.target) in WS_PATHS and "websocket" in upgrade


async def answer(
    request: HttpRequest,
    backend: Backend,
    *,
    local: bool,
    address: str = "",
    timeout: float = ANSWER_S,
) -> Reply:
    """The reply to a request that is not a WebSocket upgrade (from the peer at
    ``address``; ``local``: from loopback). Never raises."""
    try:
        async with asyncio.timeout(timeout):
            return await _answer(request, backend, local, address)
    except Unavailable as exc:
        return error(HTTPStatus.SERVICE_UNAVAILABLE, ErrorCode.UNAVAILABLE, str(exc))
    except TimeoutError:
        return error(
            HTTPStatus.SERVICE_UNAVAILABLE,
            ErrorCode.UNAVAILABLE,
            f"No answer within {timeout:g} s: adwd is stopping or overloaded. Retry shortly.",
        )
    except Exception as exc:
        log.exception("HTTP %s %s failed", request.method, request.path)
        return error(
            HTTPStatus.INTERNAL_SERVER_ERROR,
            ErrorCode.INTERNAL,
            f"adwd failed to answer ({type(exc).__name__}); retry, and report it if it persists.",
        )


async def _answer(request: HttpRequest, backend: Backend, local: bool, address: str) -> Reply:
    method, path = request.method, request.path
    if method == "OPTIONS":  # a CORS preflight: respond() adds the headers for a local origin
        return Reply(HTTPStatus.NO_CONTENT)
    board = board_route(method, path, request.query) if backend.board is not None else None
    if board is not None and not isinstance(board, BoardCall):
        return Reply(*board)  # 501: a board call adwd does not serve, and why
    if method in ("GET", "HEAD") and path in WS_PATHS:
        return error(
            HTTPStatus.UPGRADE_REQUIRED,
            ErrorCode.VALIDATION_ERROR,
            f"{path} is a WebSocket endpoint: open a WebSocket to it (Upgrade: websocket).",
            (("Upgrade", "websocket"),),
        )
    if isinstance(board, BoardCall) or method in ("GET", "HEAD"):
        # Every read and the board's DELETE pass the one check (docs/security.md);
        # what it lets through is answered within the principal's grant (its scope).
        access = backend.authorize(request, address, local) if backend.authorize else None
        if isinstance(access, Reply):
            return access
        if isinstance(board, BoardCall):
            assert backend.board is not None
            return await backend.board(board, access)
        return await backend.read(path, access)
    if method == "POST" and (path in UPDATE_PATHS or path in AGENT_PATHS):
        return await _update(request, backend.route, local)
    return error(
        HTTPStatus.NOT_FOUND,
        ErrorCode.NOT_FOUND,
        f"No {method} {path}. POST to /api/workflow-updates, /api/stage-event or "
        f"{', '.join(AGENT_PATHS)}.",
    )


async def _update(request: HttpRequest, route: Route, local: bool) -> Reply:
    """A running workflow's own report: to its run's actor, through the scheduler."""
    try:
        adw_id, message = _parse(request.path, request.body)
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
        return error(HTTPStatus.BAD_REQUEST, ErrorCode.VALIDATION_ERROR, str(exc))
    auth = request.headers.get("authorization", "")
    token = auth[7:] if auth.lower().startswith("bearer ") else None
    outcome = await asyncio.get_running_loop().run_in_executor(
        None, functools.partial(route, adw_id, message, token, local)
    )
    return Reply(*route_reply(outcome, adw_id))


def _parse(path: str, body: bytes) -> tuple[str, object]:
    """The adw_id a body is about, and the message for that run's actor."""
    if path in AGENT_PATHS:
        return _agent_report(path, body)
    if path == "/api/workflow-updates":
        update = workflow_update_decoder.decode(body)
        if isinstance(update, StatusUpdatePost):
            d = update.data
            return d.adw_id, Progress(d.progress_percent, d.current_step or None, d.message or None)
        return update.data.adw_id, LogLine(update.data.level, update.data.message)
    event = stage_event_decoder.decode(body)
    stage = event.target()
    if stage not in STAGES:
        raise ValueError(f"stage {stage!r} is not a Kanban stage; use one of: {', '.join(STAGES)}")
    return event.adw_id, StageReport(stage, event.message)


_POST_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    "/api/workflow-phase-transition": phase_transition_decoder,
    "/api/agent-output-chunk": output_chunk_decoder,
    "/api/screenshot-available": screenshot_decoder,
    "/api/spec-created": spec_created_decoder,
}


def _agent_report(path: str, body: bytes) -> tuple[str, AgentReport]:
    """A notifier's agent activity POST, validated, as the board's message."""
    now = time.time()
    if path == "/api/agent-state-update":
        update = agent_state_decoder.decode(body)
        try:
            data = agent_body_decoders[update.event_type].decode(update.data)
        except msgspec.ValidationError as exc:
            raise ValueError(f"{exc} (in data, for event_type {update.event_type!r})") from exc
        fields = msgspec.structs.asdict(data)
        kind, payload = notifier_activity(update.adw_id, update.event_type, fields, now)
        return update.adw_id, AgentReport(kind, payload)
    decoder = _POST_DECODERS[path]
    post = decoder.decode(body)
    kind, payload = posted_activity(post, now)
    return post.adw_id, AgentReport(kind, payload)


def route_reply(outcome: RouteOutcome, adw_id: str) -> tuple[HTTPStatus, dict[str, str]]:
    """The HTTP answer to a routed update: one case per outcome, checked exhaustive."""
    match outcome:
        case RouteOutcome.ACCEPTED:
            # 200, not 202: the ADW scripts' notifier counts anything else as a failure.
            return HTTPStatus.OK, {"status": "accepted", "adw_id": adw_id}
        case RouteOutcome.FORBIDDEN:
            return HTTPStatus.FORBIDDEN, error_body(
                ErrorCode.FORBIDDEN,
                "Not from loopback and no valid run token: send "
                "'Authorization: Bearer $ADWD_RUN_TOKEN'.",
            )
        case RouteOutcome.NOT_FOUND:
            return HTTPStatus.NOT_FOUND, error_body(
                ErrorCode.NOT_FOUND,
                f"No run of adw_id {adw_id!r} is running; updates are accepted only "
                "from running workflows.",
            )
    assert_never(outcome)


class HttpAwareConnection(ServerConnection):
    """A WebSocket connection whose first request is read by an :class:`HttpExchange`:
    an upgrade goes on to websockets, any other request is answered here."""

    def __init__(self, *args: Any, backend: Backend, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._backend = backend
        self._exchange: HttpExchange | None = HttpExchange()  # None: websockets' connection
        self._answering: asyncio.Task[None] | None = None

    def data_received(self, data: bytes) -> None:
        """Until the first request is read, h11 reads; then websockets, or the answer."""
        exchange = self._exchange
        if exchange is None:
            super().data_received(data)
            return
        match exchange.receive(data):
            case None:
                pass
            case Upgrade(data=seen):
                self._exchange = None
                super().data_received(seen)
            case Continue(data=out):
                self.transport.write(out)
            case Ready(request=request):
                self._answering = self.loop.create_task(self._reply(exchange, request))
                self._answering.add_done_callback(_log_failure)
            case Refused(data=out):
                self._close(out, drain=True)
            case unexpected:
                assert_never(unexpected)

    # websockets declares eof_received -> None; asyncio.Protocol's contract is
    # bool | None (True keeps the transport open), which this override uses.
    def eof_received(self) -> bool | None:  # type: ignore[override]
        """A peer that half-closes after its request still gets the reply."""
        if self._exchange is None:
            return super().eof_received()
        return True if self._answering is not None else None  # None: asyncio closes

    async def _reply(self, exchange: HttpExchange, request: HttpRequest) -> None:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        address = str(peer[0]) if peer else ""
        reply = await answer(request, self._backend, local=self._local(), address=address)
        self._close(exchange.respond(reply), drain=False)

    def _close(self, data: bytes, *, drain: bool) -> None:
        """Write the reply and close. ``drain``: the client may still be sending; shut
        our side and drop what comes for a while, so that it reads the reply, not a reset."""
        transport = self.transport
        if transport.is_closing():
            return
        transport.write(data)
        if drain and transport.can_write_eof():
            transport.write_eof()
            self.loop.call_later(LINGER_S, transport.close)
        else:
            transport.close()

    def _local(self) -> bool:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        if not peer:
            return False
        try:
            return ipaddress.ip_address(peer[0]).is_loopback
        except ValueError:
            return False


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("HTTP reply failed", exc_info=task.exception())
