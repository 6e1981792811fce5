"""The plain-HTTP read API beside the WebSocket: health, runs, one adw's state, CORS."""

from __future__ import annotations

import json
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
    client.trigger("adw_test_iso", adw_id="ov1")
    done = client.wait_terminal("ov1")
    status, body = _caught_up(server, "/api/runs", done["seq"])
    assert status == 200
    assert [r["adw_id"] for r in body["runs"]] == ["ov1"]
    assert body["metrics"]["adw_test_iso"]["completed"] == 1
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
