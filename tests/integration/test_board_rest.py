"""The board's REST calls and its *.localhost origins, against the real server."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adwd.actors.catalogue import WorkflowSpec
from tests.integration.conftest import Running, release_env

Start = Callable[..., Running]


def _call(
    server: Running, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.service.port}{path}", method=method, headers=headers or {}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            raw = reply.read()
            return reply.status, dict(reply.headers), json.loads(raw) if raw else None
    except urllib.error.HTTPError as failed:
        with failed:
            return failed.code, dict(failed.headers), json.loads(failed.read())


def test_the_boards_localhost_names_may_call(server: Running) -> None:
    for origin in ("http://api.a1b2c3d4.localhost", "http://a1b2c3d4.localhost:5173"):
        preflight = {"Origin": origin, "Access-Control-Request-Method": "DELETE"}
        status, headers, _ = _call(server, "OPTIONS", "/api/adws/list", preflight)
        assert status == 204
        assert headers["Access-Control-Allow-Origin"] == origin
        assert "DELETE" in headers["Access-Control-Allow-Methods"]
    _, headers, _ = _call(server, "GET", "/health", {"Origin": "http://localhost.evil.com"})
    assert "Access-Control-Allow-Origin" not in headers


def test_the_adw_list_filters_and_delete(start_service: Start, tmp_path: Path) -> None:
    release, env = release_env(tmp_path)
    server = start_service(workflows={"adw_sleep": WorkflowSpec(env=env, timeout_s=60)})
    board = server.client()
    card = {"title": "Dark mode", "description": "a toggle"}
    board.trigger("adw_sleep", adw_id="done1", issue_json=card, issue_type="feature")
    release.touch()
    board.wait_terminal("done1")
    release.unlink()
    board.trigger("adw_sleep", adw_id="busy1", issue_number="12")
    board.wait_for(
        lambda m: m["type"] == "status_update" and m["data"]["adw_id"] == "busy1"
        and m["data"]["status"] == "started"
    )  # fmt: skip

    status, _, listed = _call(server, "GET", "/api/adws/list")
    assert status == 200
    by_id = {a["adw_id"]: a for a in listed["adws"]}
    assert listed["count"] == 2
    assert by_id["done1"]["status"] == "completed"
    assert (by_id["done1"]["issue_title"], by_id["done1"]["data_source"]) == ("Dark mode", "kanban")
    assert (by_id["busy1"]["status"], by_id["busy1"]["issue_number"]) == ("in_progress", "12")

    _, _, done = _call(server, "GET", "/api/adws?status=completed")
    assert [a["adw_id"] for a in done["adws"]] == ["done1"]
    assert done["total_count"] == 1
    _, _, stuck = _call(server, "GET", "/api/adws?is_stuck=true")
    assert stuck["adws"] == []

    work = server.data_dir / "agents" / "busy1"
    assert work.exists()
    status, _, deleted = _call(server, "DELETE", "/api/adws/busy1")
    assert status == 200, deleted
    assert (deleted["success"], deleted["runs_cancelled"]) == (True, 1)
    assert not work.exists()
    end = board.wait_terminal("busy1")
    assert end["data"]["cancelled"] is True
    _, _, listed = _call(server, "GET", "/api/adws/list")
    assert [a["adw_id"] for a in listed["adws"]] == ["done1"]
    status, _, body = _call(server, "DELETE", "/api/adws/never1")
    assert (status, body["error"]) == (404, "not_found")


def test_what_adwd_does_not_serve_says_why(server: Running) -> None:
    status, _, body = _call(server, "GET", "/api/adws/a1b2c3d4/plan")
    assert (status, body["error"]) == (501, "not_implemented")
    assert "spec_created" in body["message"]
    assert body["detail"]  # what the board shows
    status, _, body = _call(server, "POST", "/api/merge/trigger")
    assert status == 501
