"""A stand-in for an ADW script whose coding agent streams stream-json (ours, for tests).

Run as ``fake_agent.py <issue_number> <adw_id>`` in a project directory. It writes
records in the coding agent's format (system, assistant thinking/text/tool_use,
user tool_result, result) into ``agents/<adw_id>/sdlc_implementor/raw_output.jsonl``
while it runs, appending to what an earlier run wrote, and posts to each notifier
endpoint as ``adw_modules/websocket_client.py`` does. Environment:

- ``FAKE_TAG``: a word in every text record (tells runs apart), default ``run``;
- ``FAKE_TEXTS``: how many text records, default 3;
- ``FAKE_FLOOD``: that many extra text records at once (a chatty agent);
- ``FAKE_POST``: ``1`` to post to the notifier endpoints (default ``1``);
- ``FAKE_HOLD``: a file; after its records, wait until it exists (then exit 0);
- ``FAKE_FILES``: ``1`` to write a review screenshot, a spec file and ``adw_state.json``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from pathlib import Path


def post(path: str, body: dict[str, object]) -> int:
    request = urllib.request.Request(
        os.environ["WEBSOCKET_URL"].rstrip("/") + path,
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def main() -> None:
    adw_id = sys.argv[2]
    tag = os.environ.get("FAKE_TAG", "run")
    out = Path("agents", adw_id, "sdlc_implementor", "raw_output.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    session = {"session_id": f"s-{tag}"}
    records: list[dict[str, object]] = [
        {
            "type": "system",
            "subtype": "init",
            "model": "claude-x",
            "tools": ["Read", "Edit"],
            **session,
        },
        {
            "type": "assistant",
            "message": {"content": [{"type": "thinking", "thinking": f"{tag}: how to do it"}]},
            **session,
        },
        {
            "type": "assistant",
            "message": {
                "content": [
                    {
                        "type": "tool_use",
                        "id": f"tu-{tag}",
                        "name": "Read",
                        "input": {"file_path": "src/app.js"},
                    }
                ]
            },
            **session,
        },
        {
            "type": "user",
            "message": {
                "content": [
                    {"type": "tool_result", "tool_use_id": f"tu-{tag}", "content": "console.log(1)"}
                ]
            },
            **session,
        },
    ]
    records += [
        {
            "type": "assistant",
            "message": {"content": [{"type": "text", "text": f"{tag} text {i}"}]},
            **session,
        }
        for i in range(int(os.environ.get("FAKE_TEXTS", "3")))
    ]
    records.append(
        {
            "type": "result",
            "subtype": "success",
            "is_error": False,
            "num_turns": 3,
            "duration_ms": 1200,
            "total_cost_usd": 0.01,
            **session,
        }
    )
    with out.open("a") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
            f.flush()
        flood = int(os.environ.get("FAKE_FLOOD", "0"))
        if flood:
            line = {"type": "assistant", "message": {"content": [{"type": "text", "text": "x"}]}}
            f.write((json.dumps(line) + "\n") * flood)
    codes = []
    if os.environ.get("FAKE_POST", "1") == "1":
        state = {"adw_id": adw_id, "timestamp": "2025-01-01T00:00:00Z"}
        for event_type, data in (
            (
                "state_change",
                {
                    "status": "in_progress",
                    "workflow_name": "adw_build_iso",
                    "current_step": "build",
                    "message": "State updated: build",
                },
            ),
            (
                "file_operation",
                {
                    "file_path": "src/app.js",
                    "operation": "modify",
                    "diff": "+x",
                    "lines_added": 1,
                    "lines_removed": 0,
                },
            ),
            (
                "tool_execution_post",
                {
                    "tool_name": "Edit",
                    "tool_use_id": "t9",
                    "output": "ok",
                    "success": True,
                    "input": None,
                    "duration_ms": 5,
                    "error": None,
                },
            ),
        ):
            codes.append(
                post("/api/agent-state-update", {**state, "event_type": event_type, "data": data})
            )
        codes.append(
            post(
                "/api/workflow-phase-transition",
                {
                    "adw_id": adw_id,
                    "phase_from": "plan",
                    "phase_to": "build",
                    "workflow_name": "adw_build_iso",
                    "metadata": {},
                },
            )
        )
        codes.append(
            post(
                "/api/agent-output-chunk",
                {
                    "adw_id": adw_id,
                    "agent_role": "implementor",
                    "content": "chunk",
                    "line_number": 1,
                    "total_lines": 1,
                    "is_complete": True,
                },
            )
        )
        codes.append(
            post(
                "/api/screenshot-available",
                {
                    "adw_id": adw_id,
                    "screenshot_path": "reviewer/review_img/a.png",
                    "screenshot_type": "review",
                    "metadata": {},
                },
            )
        )
        codes.append(
            post(
                "/api/spec-created",
                {
                    "adw_id": adw_id,
                    "spec_path": f"specs/issue-1-adw-{adw_id}.md",
                    "spec_type": "plan",
                    "metadata": {},
                },
            )
        )
    if os.environ.get("FAKE_FILES") == "1":
        shots = Path("agents", adw_id, "sdlc_reviewer", "review_img")
        shots.mkdir(parents=True, exist_ok=True)
        (shots / "header.png").write_bytes(b"\x89PNG fake")
        Path("specs").mkdir(exist_ok=True)
        Path("specs", f"issue-1-adw-{adw_id}-dark-mode.md").write_text("# Plan\n")
        state = Path("agents", adw_id, "adw_state.json")
        state.write_text(json.dumps({"adw_id": adw_id, "branch_name": f"feat-{tag}"}))
    print(json.dumps({"posted": codes}), flush=True)
    hold = os.environ.get("FAKE_HOLD")
    while hold and not Path(hold).exists():
        time.sleep(0.05)  # a script waiting for its agent; the test releases it


if __name__ == "__main__":
    main()
