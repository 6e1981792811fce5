"""Existing ADW scripts report progress by HTTP POST; boards see it as events."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adwd.actors.catalogue import WorkflowSpec
from tests.integration.conftest import Running

Start = Callable[..., Running]


def _post(
    server: Running, path: str, body: object, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.service.port}{path}",
        data=data,
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def _running(start_service: Start, tmp_path: Path) -> tuple[Running, Path]:
    release = tmp_path / "release"
    spec = WorkflowSpec(env={"ADW_RELEASE_FILE": str(release)})
    server = start_service(workflows={"adw_sleep": spec})
    return server, release


def test_a_script_posts_status_logs_and_stages(start_service: Start, tmp_path: Path) -> None:
    server, release = _running(start_service, tmp_path)
    board = server.client()
    board.trigger("adw_sleep", adw_id="post1")
    board.wait_for(lambda m: m["data"].get("status") == "running")

    status, body = _post(
        server,
        "/api/workflow-updates",
        {
            "type": "status_update",
            "data": {
                "adw_id": "post1",
                "status": "running",
                "message": "halfway",
                "progress_percent": 50,
                "current_step": "Stage: build",
            },
        },
    )
    assert (status, body["status"]) == (200, "accepted")
    update = board.wait_for(
        lambda m: m["type"] == "status_update" and m["data"]["message"] == "halfway"
    )
    assert update["data"]["progress_percent"] == 50

    _post(
        server,
        "/api/workflow-updates",
        {
            "type": "workflow_log",
            "data": {"adw_id": "post1", "message": "compiled 3 files", "level": "SUCCESS"},
        },
    )
    line = board.wait_for(lambda m: m["type"] == "workflow_log" and m["data"]["level"] == "SUCCESS")
    assert line["data"]["message"] == "compiled 3 files"

    status, _ = _post(
        server,
        "/api/stage-event",
        {
            "adw_id": "post1",
            "workflow_name": "adw_sleep",
            "from_stage": "build",
            "to_stage": "test",
        },
    )
    assert status == 200
    move = board.wait_for(
        lambda m: m["type"] == "stage_transition" and m["data"]["to_stage"] == "test"
    )
    assert move["data"]["from_stage"] == "build"
    # The orchestrator's form.
    _post(
        server,
        "/api/stage-event",
        {
            "adw_id": "post1",
            "event_type": "stage_completed",
            "stage_name": "test",
            "next_stage": "review",
        },
    )
    board.wait_for(lambda m: m["type"] == "stage_transition" and m["data"]["to_stage"] == "review")
    release.touch()
    board.wait_terminal("post1")
    types = [e.type for e in server.events() if e.stream == "workflow:post1"]
    assert {"run_progress", "run_logged", "stage_changed"} <= set(types)


def test_bad_and_unknown_updates_are_refused(start_service: Start, tmp_path: Path) -> None:
    server, release = _running(start_service, tmp_path)
    status, body = _post(
        server, "/api/workflow-updates", {"type": "status_update", "data": {"adw_id": "ghost"}}
    )
    assert (status, body["error"]) == (404, "not_found")
    status, body = _post(server, "/api/workflow-updates", {"type": "teleport", "data": {}})
    assert (status, body["error"]) == (400, "validation_error")
    status, body = _post(server, "/api/workflow-updates", b"{not json")
    assert status == 400
    status, body = _post(server, "/api/stage-event", {"adw_id": "x", "to_stage": "moon"})
    assert status == 400
    assert "moon" in body["message"]
    status, body = _post(server, "/api/nowhere", {})
    assert status == 404
    release.touch()


def _raw(server: Running, request: bytes) -> tuple[int, Any]:
    """Send raw bytes (sizes urllib will not send); the status and JSON body."""
    with socket.create_connection(("127.0.0.1", server.service.port), timeout=10) as sock:
        sock.sendall(request)
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


def test_oversized_requests_are_refused_with_a_validation_code(server: Running) -> None:
    """Not ``not_found``: the code says what was wrong with the request."""
    status, body = _raw(
        server,
        b"POST /api/workflow-updates HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n",
    )
    assert (status, body["error"]) == (413, "validation_error")
    status, body = _raw(server, b"POST /api/workflow-updates HTTP/1.1\r\nX-Big: " + b"a" * 70_000)
    assert (status, body["error"]) == (431, "validation_error")


def test_preflight_and_websocket_still_work_on_the_same_port(server: Running) -> None:
    with socket.create_connection(("127.0.0.1", server.service.port), timeout=10) as sock:
        sock.sendall(
            b"OPTIONS /api/stage-event HTTP/1.1\r\nHost: x\r\nOrigin: http://localhost:5173\r\n\r\n"
        )
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 204")
    assert b"Access-Control-Allow-Origin: http://localhost:5173" in reply
    assert b"Access-Control-Allow-Methods: GET, POST, DELETE, OPTIONS" in reply
    client = server.client()
    client.send({"type": "ping"})
    assert client.wait_for(lambda m: m["type"] == "pong")


POSTING_WORKFLOW = """
import json, os, urllib.request
base = "http://127.0.0.1:" + os.environ["WEBSOCKET_PORT"]
adw_id = os.environ["ADW_ID"]

def post(path, body):
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status == 200, reply.status

post("/api/stage-event", {"adw_id": adw_id, "workflow_name": "adw_scripted",
                          "from_stage": "backlog", "to_stage": "plan", "message": "planning"})
post("/api/workflow-updates", {"type": "status_update", "data": {
    "adw_id": adw_id, "status": "running", "message": "plan written",
    "progress_percent": 60, "current_step": "Writing plan"}})
post("/api/workflow-updates", {"type": "workflow_log", "data": {
    "adw_id": adw_id, "workflow_name": "adw_scripted", "message": "plan.md ready",
    "level": "SUCCESS"}})
post("/api/stage-event", {"adw_id": adw_id, "event_type": "stage_completed",
                          "stage_name": "plan", "previous_stage": "backlog",
                          "next_stage": "build"})
"""


def test_a_workflow_that_reports_by_http_as_adw_scripts_do(
    start_service: Start, tmp_path: Path
) -> None:
    script = tmp_path / "adw_scripted.py"
    script.write_text(POSTING_WORKFLOW)
    server = start_service(workflows={"adw_scripted": WorkflowSpec(argv=("{python}", str(script)))})
    board = server.client()
    board.trigger("adw_scripted", adw_id="scripted1")
    final = board.wait_terminal("scripted1")
    assert final["data"]["status"] == "completed", final["data"]["message"]
    kinds = [
        (m["type"], m["data"].get("to_stage") or m["data"].get("message"))
        for m in board.seen
        if m["type"] in ("stage_transition", "workflow_log", "status_update")
        and m["data"].get("adw_id") == "scripted1"
    ]
    assert ("stage_transition", "plan") in kinds
    assert ("status_update", "plan written") in kinds
    assert ("workflow_log", "plan.md ready") in kinds
    assert ("stage_transition", "build") in kinds
    # It managed its own stages: completing does not move the card further.
    moves = [k for k in kinds if k[0] == "stage_transition"]
    assert moves[-1] == ("stage_transition", "build")
