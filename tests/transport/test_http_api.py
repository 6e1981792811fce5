"""The one HTTP module, without sockets: h11 events in, bytes out.

A client-side h11 connection writes each request and reads each reply, so the
tests speak HTTP/1.1 as a client does, not as the module under test expects.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

import h11
import msgspec
import pytest

from adwd.actors.messages import LogLine, Progress, RouteOutcome, StageReport
from adwd.events.errors import ErrorCode
from adwd.transport.http_api import (
    Backend,
    Continue,
    HttpExchange,
    HttpRequest,
    Ready,
    Refused,
    Reply,
    Unavailable,
    Upgrade,
    answer,
    cors,
    route_reply,
)

# -- helpers: a client's side of the exchange ---------------------------------------------


def _request(
    method: str, target: str, headers: Iterable[tuple[str, str]] = (), body: bytes = b""
) -> tuple[h11.Connection, bytes]:
    """A client connection and the bytes of its request (``Content-Length`` framing)."""
    client = h11.Connection(h11.CLIENT)
    fields = [("Host", "adwd.test"), *headers]
    if body and not any(name.lower() == "transfer-encoding" for name, _ in fields):
        fields.append(("Content-Length", str(len(body))))
    data = client.send(h11.Request(method=method, target=target, headers=fields)) or b""
    if body:
        data += client.send(h11.Data(data=body)) or b""
    return client, data + (client.send(h11.EndOfMessage()) or b"")


class Parsed:
    """A reply as a client reads it."""

    def __init__(self, client: h11.Connection, data: bytes) -> None:
        client.receive_data(data)
        client.receive_data(b"")  # the server closes after its reply
        events = []
        while (event := client.next_event()) not in (h11.NEED_DATA, h11.PAUSED):
            events.append(event)
            if isinstance(event, h11.ConnectionClosed):
                break
        head = events[0]
        assert isinstance(head, h11.Response)
        self.status = head.status_code
        self.headers = {k.decode(): v.decode() for k, v in head.headers}  # names in lower case
        self.body = b"".join(e.data for e in events if isinstance(e, h11.Data))
        assert any(isinstance(e, h11.EndOfMessage) for e in events)

    def json(self) -> Any:
        return json.loads(self.body)


def _ready(data: bytes, exchange: HttpExchange | None = None) -> tuple[HttpExchange, HttpRequest]:
    exchange = exchange or HttpExchange()
    step = exchange.receive(data)
    assert isinstance(step, Ready), step
    return exchange, step.request


def _refusal(client: h11.Connection, step: object) -> Parsed:
    assert isinstance(step, Refused), step
    return Parsed(client, step.data)


# -- reading requests ---------------------------------------------------------------------


def test_a_get_is_read_whole_and_its_reply_is_json_that_closes() -> None:
    client, data = _request("GET", "/api/adws/card7?x=1", [("Origin", "https://evil.example")])
    exchange, request = _ready(data)
    assert (request.method, request.path) == ("GET", "/api/adws/card7")
    assert request.headers["origin"] == "https://evil.example"
    reply = Parsed(client, exchange.respond(Reply(HTTPStatus.OK, {"seq": 3, "runs": []})))
    assert reply.status == 200
    assert reply.json() == {"seq": 3, "runs": []}
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["content-length"] == str(len(reply.body))
    assert reply.headers["connection"] == "close"
    assert "access-control-allow-origin" not in reply.headers


def test_a_request_arriving_a_byte_at_a_time_is_read_once_whole() -> None:
    body = b'{"adw_id":"a1","to_stage":"build"}'
    _, data = _request("POST", "/api/stage-event", [("Authorization", "Bearer t")], body)
    exchange = HttpExchange()
    steps = [exchange.receive(data[i : i + 1]) for i in range(len(data))]
    assert steps[:-1] == [None] * (len(data) - 1)
    last = steps[-1]
    assert isinstance(last, Ready)
    assert last.request.body == body
    assert last.request.headers["authorization"] == "Bearer t"
    assert exchange.receive(b"GET / HTTP/1.1\r\n\r\n") is None  # one request per connection


def test_a_chunked_body_is_read_whole() -> None:
    client = h11.Connection(h11.CLIENT)
    head = h11.Request(
        method="POST",
        target="/api/workflow-updates",
        headers=[("Host", "x"), ("Transfer-Encoding", "chunked")],
    )
    data = b"".join(
        client.send(event) or b""
        for event in (head, h11.Data(data=b'{"a":'), h11.Data(data=b"1}"), h11.EndOfMessage())
    )
    _, request = _ready(data)
    assert request.body == b'{"a":1}'


# -- the seam with websockets -------------------------------------------------------------

UPGRADE = [
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("Sec-WebSocket-Version", "13"),
]


@pytest.mark.parametrize("target", ["/ws", "/ws/trigger", "/ws/trigger?since=4&epoch=e"])
def test_a_websocket_upgrade_goes_to_websockets_with_every_byte(target: str) -> None:
    _, head = _request("GET", target, UPGRADE)
    frame = b"\x81\x84abcd" + bytes(b ^ k for b, k in zip(b"ping", b"abcd", strict=True))
    exchange = HttpExchange()
    assert exchange.receive(head[:10]) is None
    step = exchange.receive(head[10:] + frame)  # a client may send a frame right behind
    assert step == Upgrade(head + frame)
    assert exchange.receive(b"more") is None  # websockets reads from here on


@pytest.mark.parametrize(
    ("method", "target", "headers"),
    [
        ("GET", "/ws", []),  # no Upgrade: answered here with 426
        ("GET", "/ws", [("Upgrade", "h2c"), ("Connection", "Upgrade")]),
        ("GET", "/health", UPGRADE),  # an upgrade of another path: plain HTTP
        ("POST", "/ws/trigger", UPGRADE),
    ],
)
def test_anything_but_a_websocket_upgrade_is_answered_here(
    method: str, target: str, headers: list[tuple[str, str]]
) -> None:
    _, data = _request(method, target, headers)
    _ready(data)


# -- size limits and unreadable requests --------------------------------------------------


def test_a_body_declared_too_large_is_refused_before_it_is_read() -> None:
    client = h11.Connection(h11.CLIENT)
    data = client.send(
        h11.Request(
            method="POST",
            target="/api/workflow-updates",
            headers=[("Host", "x"), ("Content-Length", "11"), ("Origin", "http://localhost:5173")],
        )
    )
    reply = _refusal(client, HttpExchange(max_body=10).receive(data or b""))
    assert reply.status == 413
    assert reply.json()["error"] == ErrorCode.VALIDATION_ERROR.value
    # The board can read why: the CORS headers of its origin are there.
    assert reply.headers["access-control-allow-origin"] == "http://localhost:5173"


def test_a_chunked_body_growing_too_large_is_refused() -> None:
    client = h11.Connection(h11.CLIENT)
    head = h11.Request(
        method="POST",
        target="/api/stage-event",
        headers=[("Host", "x"), ("Transfer-Encoding", "chunked")],
    )
    exchange = HttpExchange(max_body=10)
    assert (
        exchange.receive((client.send(head) or b"") + (client.send(h11.Data(data=b"x" * 8)) or b""))
        is None
    )
    reply = _refusal(client, exchange.receive(client.send(h11.Data(data=b"x" * 8)) or b""))
    assert (reply.status, reply.json()["error"]) == (413, "validation_error")


def test_headers_too_large_are_refused_with_431() -> None:
    exchange = HttpExchange(max_head=1000)
    step = exchange.receive(b"POST /api/stage-event HTTP/1.1\r\nX-Big: " + b"a" * 2000)
    assert isinstance(step, Refused)
    # No request was read: a client reads the reply anyway.
    status_line, _, rest = step.data.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 431 Request Header Fields Too Large"
    body = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert body == {"error": "validation_error", "message": "Headers over 1000 bytes."}


@pytest.mark.parametrize(
    "data",
    [
        b"garbage\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ],
)
def test_what_is_not_http_gets_a_400_with_the_error_shape(data: bytes) -> None:
    step = HttpExchange().receive(data)
    assert isinstance(step, Refused)
    assert step.data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    body = json.loads(step.data.partition(b"\r\n\r\n")[2])
    assert body["error"] == "validation_error"
    assert body["message"].startswith("Not an HTTP/1.1 request")


def test_a_client_waiting_for_100_continue_gets_it_then_sends_its_body() -> None:
    body = b'{"adw_id":"a","to_stage":"plan"}'
    client = h11.Connection(h11.CLIENT)
    head = h11.Request(
        method="POST",
        target="/api/stage-event",
        headers=[("Host", "x"), ("Content-Length", str(len(body))), ("Expect", "100-continue")],
    )
    exchange = HttpExchange()
    step = exchange.receive(client.send(head) or b"")
    assert isinstance(step, Continue)
    client.receive_data(step.data)
    assert isinstance(client.next_event(), h11.InformationalResponse)
    data = (client.send(h11.Data(data=body)) or b"") + (client.send(h11.EndOfMessage()) or b"")
    _, request = _ready(data, exchange)
    assert request.body == body


# -- replies --------------------------------------------------------------------------------


def test_head_gets_the_headers_of_get_and_no_body() -> None:
    client, data = _request("HEAD", "/health")
    exchange, request = _ready(data)
    assert request.method == "HEAD"
    reply = Parsed(client, exchange.respond(Reply(HTTPStatus.OK, {"status": "healthy"})))
    assert reply.status == 200
    assert reply.headers["content-length"] == str(len(b'{"status":"healthy"}'))
    assert reply.body == b""


def test_a_preflight_from_a_local_board_gets_204_and_the_cors_headers() -> None:
    client, data = _request("OPTIONS", "/api/stage-event", [("Origin", "http://[::1]:8080")])
    exchange, request = _ready(data)
    raw = exchange.respond(asyncio.run(answer(request, _backend(), local=True)))
    assert b"\r\nAccess-Control-Allow-Origin: http://[::1]:8080\r\n" in raw  # as browsers see it
    reply = Parsed(client, raw)
    assert (reply.status, reply.body) == (204, b"")
    assert "content-length" not in reply.headers
    assert reply.headers["access-control-allow-origin"] == "http://[::1]:8080"
    assert reply.headers["access-control-allow-methods"] == "GET, POST, DELETE, OPTIONS"
    assert reply.headers["access-control-allow-headers"] == "Content-Type, Authorization"


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://localhost:5173", True),
        ("http://127.0.0.1:3000", True),
        ("https://localhost", True),
        ("http://[::1]:8080", True),
        ("http://a1b2c3d4.localhost", True),  # the board behind its proxy (issue 14)
        ("http://api.a1b2c3d4.localhost:80", True),
        ("http://evil.example/.localhost", False),
        ("http://x.localhost.evil.example", False),
        ("https://evil.example", False),
        ("http://localhost.evil.example", False),
        ("http://localhost:5173\n", False),
        ("null", False),
        (None, False),
    ],
)
def test_cors_only_for_localhost_origins(origin: str | None, allowed: bool) -> None:
    headers = dict(cors(origin, preflight=False))
    assert (headers.get("Access-Control-Allow-Origin", "none") == origin) is allowed
    assert ("Access-Control-Allow-Methods" in dict(cors(origin, preflight=True))) is allowed
    assert "Access-Control-Allow-Methods" not in headers


def test_the_encoder_takes_structs_as_the_read_api_may_return_them() -> None:
    class Run(msgspec.Struct):
        adw_id: str
        seq: int

    client, data = _request("GET", "/api/runs")
    exchange, _ = _ready(data)
    reply = Parsed(client, exchange.respond(Reply(HTTPStatus.OK, {"runs": [Run("a", 2)]})))
    assert reply.json() == {"runs": [{"adw_id": "a", "seq": 2}]}


# -- answers: what each request gets ------------------------------------------------------


class FakeTransport:
    """The transport's side: canned reads, recorded routes."""

    def __init__(self, outcome: RouteOutcome = RouteOutcome.ACCEPTED) -> None:
        self.reads: list[str] = []
        self.routed: list[tuple[str, object, str | None, bool]] = []
        self.outcome = outcome
        self.fail: Exception | None = None

    async def read(self, path: str, scope: object = None) -> Reply:
        self.reads.append(path)
        if self.fail is not None:
            raise self.fail
        return Reply(HTTPStatus.OK, {"path": path})

    def route(self, adw_id: str, message: object, token: str | None, local: bool) -> RouteOutcome:
        self.routed.append((adw_id, message, token, local))
        if self.fail is not None:
            raise self.fail
        return self.outcome


def _backend(fake: FakeTransport | None = None) -> Backend:
    fake = fake or FakeTransport()
    return Backend(read=fake.read, route=fake.route)


def _answer(
    fake: FakeTransport,
    method: str,
    path: str,
    body: object = None,
    headers: dict[str, str] | None = None,
    *,
    local: bool = True,
) -> Reply:
    data = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
    request = HttpRequest(method, path, headers or {}, data)
    return asyncio.run(answer(request, _backend(fake), local=local))


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_reads_are_the_transports_answers(method: str) -> None:
    fake = FakeTransport()
    assert _answer(fake, method, "/health") == Reply(HTTPStatus.OK, {"path": "/health"})
    assert fake.reads == ["/health"]


@pytest.mark.parametrize("path", ["/ws", "/ws/trigger"])
def test_a_plain_get_of_a_websocket_path_is_told_to_upgrade(path: str) -> None:
    fake = FakeTransport()
    reply = _answer(fake, "GET", path)
    assert reply.status == HTTPStatus.UPGRADE_REQUIRED
    assert ("Upgrade", "websocket") in reply.headers
    assert isinstance(reply.body, dict)
    assert reply.body["error"] == "validation_error"
    assert fake.reads == []


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        (
            "/api/workflow-updates",
            {"type": "status_update", "data": {"adw_id": "a1", "progress_percent": 50}},
            Progress(50, None, None),
        ),
        (
            "/api/workflow-updates",
            {"type": "workflow_log", "data": {"adw_id": "a1", "message": "hi", "level": "ERROR"}},
            LogLine("ERROR", "hi"),
        ),
        ("/api/stage-event", {"adw_id": "a1", "to_stage": "test"}, StageReport("test", "")),
    ],
)
def test_an_update_is_routed_to_its_run(path: str, body: object, expected: object) -> None:
    fake = FakeTransport()
    reply = _answer(fake, "POST", path, body, {"authorization": "Bearer s3cret"}, local=False)
    assert reply == Reply(HTTPStatus.OK, {"status": "accepted", "adw_id": "a1"})
    (routed,) = fake.routed
    assert routed[0] == "a1"
    assert type(routed[1]) is type(expected)
    assert routed[2:] == ("s3cret", False)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/workflow-updates", {"type": "teleport", "data": {}}),
        ("/api/workflow-updates", b"{not json"),
        ("/api/stage-event", {"adw_id": "x", "to_stage": "moon"}),
    ],
)
def test_a_body_that_does_not_fit_is_a_400_and_is_not_routed(path: str, body: object) -> None:
    fake = FakeTransport()
    reply = _answer(fake, "POST", path, body)
    assert reply.status == HTTPStatus.BAD_REQUEST
    assert isinstance(reply.body, dict)
    assert reply.body["error"] == "validation_error"
    assert fake.routed == []


def test_the_routes_outcome_is_the_reply() -> None:
    fake = FakeTransport(RouteOutcome.FORBIDDEN)
    reply = _answer(fake, "POST", "/api/stage-event", {"adw_id": "a", "to_stage": "plan"})
    assert reply.status == HTTPStatus.FORBIDDEN
    assert fake.routed[0][2:] == (None, True)  # no token, from loopback


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/api/nowhere"), ("POST", "/health"), ("DELETE", "/api/runs")]
)
def test_no_such_endpoint_is_a_404(method: str, path: str) -> None:
    reply = _answer(FakeTransport(), method, path, {})
    assert reply.status == HTTPStatus.NOT_FOUND
    assert isinstance(reply.body, dict)
    assert reply.body["error"] == "not_found"
    assert f"No {method} {path}." in reply.body["message"]


def test_a_backend_that_cannot_answer_now_gives_503_unavailable() -> None:
    fake = FakeTransport()
    fake.fail = Unavailable("adwd is stopping")
    assert _answer(fake, "GET", "/api/runs") == Reply(
        HTTPStatus.SERVICE_UNAVAILABLE, {"error": "unavailable", "message": "adwd is stopping"}
    )


def test_a_failing_backend_gives_500_internal_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeTransport()
    fake.fail = RuntimeError("boom")
    reply = _answer(fake, "POST", "/api/stage-event", {"adw_id": "a", "to_stage": "plan"})
    assert reply.status == HTTPStatus.INTERNAL_SERVER_ERROR
    assert isinstance(reply.body, dict)
    assert reply.body["error"] == "internal"
    assert "RuntimeError" in reply.body["message"]
    assert "HTTP POST /api/stage-event failed" in caplog.text


# -- route_reply ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "status", "code"),
    [
        (RouteOutcome.ACCEPTED, HTTPStatus.OK, None),
        (RouteOutcome.FORBIDDEN, HTTPStatus.FORBIDDEN, "forbidden"),
        (RouteOutcome.NOT_FOUND, HTTPStatus.NOT_FOUND, "not_found"),
    ],
)
def test_each_outcome_has_its_status_and_error_code(
    outcome: RouteOutcome, status: HTTPStatus, code: str | None
) -> None:
    got, body = route_reply(outcome, "a1")
    assert got == status
    assert body.get("error") == code
    if code is None:
        assert body == {"status": "accepted", "adw_id": "a1"}


def test_every_outcome_is_answered() -> None:
    assert {route_reply(o, "a")[0] for o in RouteOutcome} == {
        HTTPStatus.OK,
        HTTPStatus.FORBIDDEN,
        HTTPStatus.NOT_FOUND,
    }


def test_an_answer_that_does_not_come_in_time_is_a_503() -> None:
    """Before websockets' open_timeout aborts the connection, the client is told."""

    async def slow(path: str, scope: object = None) -> Reply:
        await asyncio.sleep(10)
        return Reply(HTTPStatus.OK)

    backend = Backend(read=slow, route=FakeTransport().route)
    request = HttpRequest("GET", "/api/runs", {})
    reply = asyncio.run(answer(request, backend, local=True, timeout=0.01))
    assert reply.status == HTTPStatus.SERVICE_UNAVAILABLE
    assert isinstance(reply.body, dict)
    assert reply.body["error"] == "unavailable"
