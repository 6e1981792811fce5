"""The agent activity stream: an agent's stream-json output and the scripts'
notifier posts reach a board as its messages, with seq, resumable, bounded."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adwd.actors.catalogue import WorkflowSpec
from adwd.events.domain import AgentActivity, AgentOffsets
from tests.integration.conftest import Client, Running

Start = Callable[..., Running]
AGENT = Path(__file__).with_name("fake_agent.py")
STREAM = ("text_block", "thinking_block", "tool_use_pre", "tool_use_post", "agent_log")
NOTIFIED = (
    "agent_updated",
    "file_changed",
    "workflow_phase_transition",
    "agent_output_chunk",
    "screenshot_available",
    "spec_created",
)
AGENT_TYPES = {*STREAM, *NOTIFIED}


def _start(start_service: Start, tmp_path: Path, **env: str) -> tuple[Running, Path]:
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    spec = WorkflowSpec(
        argv=(sys.executable, str(AGENT), "{issue_number}", "{adw_id}"),
        env={"PYTHONPATH": "", **env},
    )
    server = start_service(
        project_dir=str(project), data_dir=tmp_path / "data", workflows={"adw_agent": spec}
    )
    return server, project


def _agent_messages(client: Client, adw_id: str) -> list[dict[str, Any]]:
    return [
        m for m in client.seen if m["type"] in AGENT_TYPES and m["data"].get("adw_id") == adw_id
    ]


def _done(client: Client, adw_id: str) -> None:
    client.wait_for(
        lambda m: (
            m["type"] == "workflow_metrics"
            and m["data"]["adw_id"] == adw_id
            and m["data"]["phase"] == "final"
        )
    )


def test_a_board_sees_the_agent_in_its_own_shapes_with_seq_and_can_resume(
    start_service: Start, tmp_path: Path
) -> None:
    server, _ = _start(start_service, tmp_path)
    board = server.client()
    board.trigger("adw_agent", adw_id="ag1")
    _done(board, "ag1")
    seen = _agent_messages(board, "ag1")
    types = [m["type"] for m in seen]
    # Every stream-json record and every notifier post arrived, as the board's types.
    assert set(types) == AGENT_TYPES
    assert types.count("text_block") == 3
    seqs = [m["seq"] for m in seen]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    by_type = {m["type"]: m for m in seen}
    # The stream-json records in order, before the run's end.
    stream = [
        m["type"]
        for m in seen
        if m["type"] in STREAM and m["data"].get("tool_name") != "Edit"  # Edit: the notifier's
    ]
    assert stream == ["agent_log", "thinking_block", "tool_use_pre", "tool_use_post"] + [
        "text_block"
    ] * 3 + ["agent_log"]
    pre, post = by_type["tool_use_pre"]["data"], by_type["tool_use_post"]["data"]
    assert pre["tool_input"] == pre["input"] == {"file_path": "src/app.js"}
    assert (post["tool_name"], post["tool_output"], post["output"]) == (
        "Read",
        "console.log(1)",
        "console.log(1)",
    )
    assert (post["status"], post["success"]) == ("success", True)
    changed = by_type["file_changed"]["data"]
    assert changed["operation"] == changed["change_type"] == "modify"
    for message in seen:  # the board reads data.timestamp; the original sent the envelope's
        assert message["timestamp"] == message["data"]["timestamp"]
    assert by_type["spec_created"]["data"]["spec_path"] == "specs/issue-1-adw-ag1.md"
    end = next(
        m["seq"]
        for m in board.seen
        if m["type"] == "status_update" and m["data"]["status"] == "completed"
    )
    assert max(m["seq"] for m in seen if m["type"] in STREAM) < end

    # A board that resumes from before the run gets every one again, in order.
    first = min(seqs)
    again = server.client()
    again.send({"type": "subscribe", "data": {"since": first - 1}})
    again.wait_for(lambda m: m["type"] == "subscribed")
    _done(again, "ag1")
    assert [(m["type"], m["seq"]) for m in _agent_messages(again, "ag1")] == [
        (m["type"], m["seq"]) for m in seen
    ]


def test_a_restart_mid_run_neither_loses_nor_repeats_a_record(
    start_service: Start, tmp_path: Path
) -> None:
    hold = tmp_path / "hold"
    server, _ = _start(start_service, tmp_path, FAKE_TAG="one", FAKE_POST="0",
                       FAKE_HOLD=str(hold))  # fmt: skip
    board = server.client()
    board.trigger("adw_agent", adw_id="rs1")
    board.wait_for(lambda m: m["type"] == "text_block" and m["data"]["content"] == "one text 2")
    server.service.stop()  # mid-run: the run is interrupted, the agent's output drained

    hold.touch()
    server, _ = _start(start_service, tmp_path, FAKE_TAG="two", FAKE_POST="0")
    board = server.client()
    board.trigger("adw_agent", adw_id="rs1")
    _done(board, "rs1")
    texts = [
        e.event.data["content"]
        for e in server.events()
        if isinstance(e.event, AgentActivity) and e.event.kind == "text_block"
    ]
    # The same file, read by two services: every record exactly once.
    assert texts == [f"one text {i}" for i in range(3)] + [f"two text {i}" for i in range(3)]


def test_a_flood_is_coalesced_and_said_so(start_service: Start, tmp_path: Path) -> None:
    server, project = _start(start_service, tmp_path, FAKE_FLOOD="100000", FAKE_POST="0")
    board = server.client()
    board.trigger("adw_agent", adw_id="fl1")
    _done(board, "fl1")
    seen = _agent_messages(board, "fl1")
    notes = [m for m in seen if m["type"] == "agent_log" and "coalesced" in m["data"]["message"]]
    assert notes, "coalescing must be reported"
    coalesced = sum(int(n["data"]["message"].split()[0]) for n in notes)
    texts = sum(1 for m in seen if m["type"] == "text_block")
    assert texts + coalesced >= 100_000  # every record sent or counted in a note
    assert texts < 2_000  # bounded: the board was not flooded
    assert not board.ws.close_code  # its connection stayed open
    activity = [e for e in server.events() if isinstance(e.event, AgentActivity)]
    assert len(activity) < 2_500
    # Everything read is recorded as read: a later run starts after the last record.
    last = [e.event for e in server.events() if isinstance(e.event, AgentOffsets)][-1]
    size = (project / "agents" / "fl1" / "sdlc_implementor" / "raw_output.jsonl").stat().st_size
    assert last.offsets["sdlc_implementor/raw_output.jsonl"][1] == size


def _post(server: Running, path: str, body: object) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.service.port}{path}",
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def test_the_notifier_endpoints_validate_and_accept_only_running_runs(
    start_service: Start, tmp_path: Path
) -> None:
    server, _ = _start(start_service, tmp_path)
    status, body = _post(server, "/api/spec-created", {"adw_id": "nobody", "spec_path": "s.md"})
    assert (status, body["error"]) == (404, "not_found")
    status, body = _post(
        server, "/api/agent-state-update", {"adw_id": "a1", "event_type": "dance", "data": {}}
    )
    assert (status, body["error"]) == (400, "validation_error")
    assert "event_type" in body["message"]
    status, body = _post(
        server,
        "/api/agent-state-update",
        {"adw_id": "a1", "event_type": "file_operation", "data": {"lines_added": "many"}},
    )
    assert (status, body["error"]) == (400, "validation_error")
    assert "data" in body["message"]
    status, body = _post(server, "/api/workflow-phase-transition", {"adw_id": "a1"})
    assert (status, body["error"]) == (400, "validation_error")
    assert "phase_to" in body["message"]


def test_screenshots_specs_and_the_state_are_announced_once(
    start_service: Start, tmp_path: Path
) -> None:
    server, _ = _start(start_service, tmp_path, FAKE_FILES="1", FAKE_POST="0", FAKE_TAG="a")
    board = server.client()
    board.trigger("adw_agent", adw_id="fs1")
    _done(board, "fs1")
    seen = _agent_messages(board, "fs1")
    shots = [m["data"] for m in seen if m["type"] == "screenshot_available"]
    specs = [m["data"] for m in seen if m["type"] == "spec_created"]
    states = [m["data"] for m in seen if m["type"] == "agent_updated"]
    assert [s["screenshot_path"] for s in shots] == ["sdlc_reviewer/review_img/header.png"]
    assert [s["spec_path"] for s in specs] == ["specs/issue-1-adw-fs1-dark-mode.md"]
    assert states[-1]["state"] == {"adw_id": "fs1", "branch_name": "feat-a"}
    assert "branch_name" in states[-1]["changed_fields"]

    # The next run of the adw_id rewrites the state; the same files are not announced again.
    board.send({"type": "trigger_workflow", "data": {"workflow_type": "adw_agent",
                                                     "adw_id": "fs1"}})  # fmt: skip
    board.seen.clear()
    board.unclaimed.clear()
    _done(board, "fs1")
    again = _agent_messages(board, "fs1")
    assert not [m for m in again if m["type"] in ("screenshot_available", "spec_created")]
