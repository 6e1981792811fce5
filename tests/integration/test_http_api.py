"""The plain-HTTP read API beside the WebSocket: health, runs, one adw's state, CORS."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.integration.conftest import TIMEOUT, Running


def _get(server: Running, path: str, origin: str | None = None) -> tuple[int, Any, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{server.service.port}{path}")
    if origin:
        request.add_header("Origin", origin)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read()), reply.headers
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read()), error.headers


def _caught_up(server: Running, path: str, seq: int) -> tuple[int, Any]:
    """GET ``path`` once the read API has folded ``seq`` (it follows the stream)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        status, body, _ = _get(server, path)
        if body.get("seq", 0) >= seq or time.monotonic() > deadline:
            return status, body


def test_adw_state_gives_the_current_stage(server: Running) -> None:
    client = server.client()
    client.trigger("adw_plan_iso", adw_id="card7")
    done = client.wait_terminal("card7")
    status, body = _caught_up(server, "/api/adws/card7", done["seq"])
    assert status == 200
    assert body["current_stage"] == "build"  # plan done: the card moves on
    assert body["runs"][0]["status"] == "completed"
    client.trigger("adw_build_iso", adw_id="card7", trigger_reason="#fail")
    failed = client.wait_terminal("card7")
    assert _caught_up(server, "/api/adws/card7", failed["seq"])[1]["current_stage"] == "errored"

    status, body, _ = _get(server, "/api/adws/nobody")
    assert status == 404
    assert body["error"] == "not_found"


def test_runs_overview_and_health(server: Running) -> None:
    client = server.client()
    client.trigger("adw_plan_iso", adw_id="ov1")
    done = client.wait_terminal("ov1")
    status, body = _caught_up(server, "/api/runs", done["seq"])
    assert status == 200
    assert [r["adw_id"] for r in body["runs"]] == ["ov1"]
    assert body["metrics"]["adw_plan_iso"]["completed"] == 1
    assert body["queue"] == []
    status, health, _ = _get(server, "/health")
    assert (status, health["status"]) == (200, "healthy")
    assert health["active_connections"] == 1
    assert health["seq"] >= body["seq"]


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://localhost:5173", True),
        ("http://127.0.0.1:3000", True),
        ("http://[::1]:8080", True),
        ("https://evil.example", False),
        ("http://localhost.evil.example", False),
    ],
)
def test_cors_only_for_localhost_origins(server: Running, origin: str, allowed: bool) -> None:
    _, _, headers = _get(server, "/health", origin=origin)
    assert (headers.get("Access-Control-Allow-Origin") == origin) is allowed


def _exchange(server: Running, request: bytes, *, half_close: bool = False) -> bytes:
    """Raw bytes in, every byte of the reply out (the server closes after it)."""
    with socket.create_connection(("127.0.0.1", server.service.port), timeout=10) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


def _split(reply: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ", 2)[1]), fields, body


@pytest.mark.parametrize(
    ("request_line", "status"),
    [
        (b"GET /livez HTTP/1.1", 200),
        (b"GET /nothing/here HTTP/1.1", 404),
        (b"POST /api/nowhere HTTP/1.1", 404),
        (b"GET /ws HTTP/1.1", 426),
        (b"PUT /api/runs HTTP/1.1", 404),
    ],
)
def test_get_and_post_answer_alike_json_cors_and_close(
    server: Running, request_line: bytes, status: int
) -> None:
    """One HTTP path: the same headers and error shape whatever the method."""
    reply = _exchange(
        server,
        request_line + b"\r\nHost: x\r\nOrigin: http://localhost:5173\r\nContent-Length: 0\r\n\r\n",
    )
    got, fields, body = _split(reply)
    assert got == status
    assert fields["Content-Type"] == "application/json"
    assert fields["Content-Length"] == str(len(body))
    assert fields["Connection"] == "close"
    assert fields["Access-Control-Allow-Origin"] == "http://localhost:5173"
    if status >= 400:
        assert set(json.loads(body)) == {"error", "message"}


def test_a_plain_get_of_the_websocket_path_is_told_to_upgrade(server: Running) -> None:
    got, fields, body = _split(_exchange(server, b"GET /ws/trigger HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert (got, fields["Upgrade"]) == (426, "websocket")
    assert json.loads(body)["error"] == "validation_error"


def test_head_and_a_half_closed_client_get_their_replies(server: Running) -> None:
    got, fields, body = _split(_exchange(server, b"HEAD /livez HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert (got, body) == (200, b"")
    assert int(fields["Content-Length"]) > 0
    reply = _exchange(server, b"GET /livez HTTP/1.0\r\n\r\n", half_close=True)
    assert json.loads(_split(reply)[2]) == {"status": "ok", "checks": {"process": True}}


def test_a_body_too_large_still_being_sent_gets_its_413(server: Running) -> None:
    """The client is still sending when refused: it reads the reply, not a reset."""
    head = b"POST /api/workflow-updates HTTP/1.1\r\nHost: x\r\nContent-Length: 3000000\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.service.port), timeout=10) as sock:
        sock.sendall(head)
        sent = 0
        try:
            while sent < 3_000_000:
                sent += sock.send(b"x" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    got, _, body = _split(reply)
    assert (got, json.loads(body)["error"]) == (413, "validation_error")


def test_garbage_gets_a_400_and_a_websocket_still_opens(server: Running) -> None:
    got, _, body = _split(_exchange(server, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"))
    assert (got, json.loads(body)["error"]) == (400, "validation_error")
    client = server.client()
    client.send({"type": "ping"})
    assert client.wait_for(lambda m: m["type"] == "pong")
