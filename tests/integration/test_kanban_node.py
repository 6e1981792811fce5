"""A Node.js client written with ``ws`` that behaves as the Kanban web app does,
against the real server: pings, a full-payload trigger queued while offline and
re-sent after an abnormal close, stage transitions, logs, and the HTTP calls a
board makes on every reconnect."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from adwd.actors.catalogue import WorkflowSpec
from tests.integration.conftest import TIMEOUT, Running

NODE_DIR = Path(__file__).resolve().parents[1] / "node"


@pytest.fixture(scope="module")
def node() -> str:
    """Node.js with the ws package installed from the npm registry."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node, "Node.js is needed for the Kanban client test"
    assert npm, "npm is needed to install ws for the Kanban client test"
    if not (NODE_DIR / "node_modules" / "ws").exists():
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_DIR, check=True, timeout=300, capture_output=True,
        )  # fmt: skip
    return node


def _lines(proc: subprocess.Popen[str]) -> Iterator[dict[str, Any]]:
    assert proc.stdout is not None
    for line in proc.stdout:
        yield json.loads(line)


def test_kanban_app_over_a_restart(node: str, start_service: Callable[..., Running]) -> None:
    first = start_service()
    port = first.service.port
    proc = subprocess.Popen(
        [node, str(NODE_DIR / "kanban_client.mjs")],
        env={**os.environ, "ADWD_PORT": str(port), "ADW_ID": "kanban1", "PING_MS": "100"},
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        lines = _lines(proc)
        assert next(lines)["event"] == "open"
        pong = next(m for m in lines if m.get("type") == "pong")
        assert isinstance(pong["timestamp"], int)
        first.service.stop()  # an abnormal close (1001): the app queues, then reconnects
        assert next(m for m in lines if m["event"] == "close")["code"] == 1001
        second = start_service(port=port, data_dir=first.data_dir)
        seen = []
        for message in lines:
            seen.append(message)
            if message["event"] == "done":
                break
        assert proc.wait(timeout=TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()

    by_type = [m.get("type") for m in seen if m["event"] == "message"]
    response = next(m for m in seen if m.get("type") == "trigger_response")
    assert response["data"]["status"] == "accepted"
    assert response["data"]["adw_id"] == "kanban1"
    assert by_type.count("trigger_response") == 1
    done = seen[-1]["card"]
    assert done["stage"] == "build"  # plan started (-> plan), completed (-> build)
    assert done["stage_from_step"] == "plan"
    assert done["logs"], "log lines reached the board"
    http = next(m for m in seen if m["event"] == "http")
    assert http["health"]["status"] == "healthy"
    assert http["adw_status"] in (200, 404)  # asked right after reconnecting
    runs = [e for e in second.events() if e.type == "run_queued"]
    assert len(runs) == 1
    assert runs[0].event.issue_json == {  # type: ignore[union-attr]
        "title": "Add login",
        "body": "As a user...",
        "labels": ["feature"],
    }


def test_the_boards_agent_panel_and_session_messages(
    node: str, start_service: Callable[..., Running], tmp_path: Path
) -> None:
    """The board's handlers, in Node, see every agent message by the fields they read."""
    project = tmp_path / "project"
    project.mkdir()
    agent = Path(__file__).with_name("fake_agent.py")
    spec = WorkflowSpec(argv=(sys.executable, str(agent), "{issue_number}", "{adw_id}"))
    server = start_service(project_dir=str(project), workflows={"adw_agent": spec})
    proc = subprocess.Popen(
        [node, str(NODE_DIR / "board_agent_client.mjs")],
        env={**os.environ, "ADWD_PORT": str(server.service.port), "ADW_ID": "nodeag1"},
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        seen = []
        for message in _lines(proc):
            seen.append(message)
            if message["event"] in ("done", "ws_error"):
                break
        assert proc.wait(timeout=TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()
    events = {m["event"]: m for m in seen}
    assert "error" not in events, events.get("error")
    assert events["session"]["data"]["session_id"] == "sess-node"
    assert events["ticket"]["data"]["status"] == "received"
    done = events["done"]
    assert done["status"] == "completed"
    panel = done["panel"]
    kinds = {entry["kind"] for entry in panel}
    assert kinds == {"thinking", "text", "tool", "result", "file", "log"}
    assert all(entry["at"] and isinstance(entry["seq"], int) for entry in panel)
    tool = next(e for e in panel if e["kind"] == "tool")
    assert tool["input"] == {"file_path": "src/app.js"}
    result = next(e for e in panel if e["kind"] == "result" and e["tool"] == "Read")
    assert (result["output"], result["ok"]) == ("console.log(1)", True)
    assert next(e for e in panel if e["kind"] == "file")["change"] == "modify"
