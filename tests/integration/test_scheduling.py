"""Concurrency limit, idempotent re-trigger, cancel, timeout, spawn failure."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from adwd.actors.catalogue import WorkflowSpec
from tests.integration.conftest import Running

Start = Callable[..., Running]


def _sleep_spec(tmp_path: Path, **kw: object) -> tuple[Path, WorkflowSpec]:
    release = tmp_path / "release"
    env = {"ADW_RELEASE_FILE": str(release), "ADW_TRACE_FILE": str(tmp_path / "trace")}
    return release, WorkflowSpec(env=env, **kw)  # type: ignore[arg-type]


def _max_overlap(trace: Path) -> int:
    """Most child processes alive at once, from the start/end lines they wrote."""
    points = []
    for line in trace.read_text().splitlines():
        kind, _pid, ns = line.split()
        points.append((int(ns), 1 if kind == "start" else -1))
    alive = peak = 0
    for _ns, delta in sorted(points, key=lambda p: (p[0], p[1])):
        alive += delta
        peak = max(peak, alive)
    return peak


def test_at_most_max_concurrent_children_run_and_all_complete(
    start_service: Start, tmp_path: Path
) -> None:
    release, spec = _sleep_spec(tmp_path)
    server = start_service(max_concurrent=2, workflows={"adw_sleep": spec})
    client = server.client()
    ids = [client.trigger("adw_sleep", adw_id=f"conc{i}")["data"]["adw_id"] for i in range(5)]
    waiting = set()  # runs whose child reported progress: it is up and tracing
    while len(waiting) < 2:
        update = client.wait_for(lambda m: m["data"].get("status") == "running")
        waiting.add(update["data"]["adw_id"])
    assert waiting == {"conc0", "conc1"}  # FIFO
    release.touch()
    done = {}
    while len(done) < 5:
        update = client.wait_for(lambda m: m["type"] == "status_update")
        if update["data"]["status"] in ("completed", "failed"):
            done[update["data"]["adw_id"]] = update["data"]["status"]
    assert done == dict.fromkeys(ids, "completed")
    assert _max_overlap(tmp_path / "trace") == 2

    running = peak = 0
    for stored in server.events():
        if stored.type == "run_started":
            running += 1
        elif stored.type in ("run_completed", "run_failed"):
            running -= 1
        peak = max(peak, running)
    assert peak == 2


def test_retrigger_while_running_is_answered_the_same_and_starts_nothing(
    start_service: Start, tmp_path: Path
) -> None:
    release, spec = _sleep_spec(tmp_path)
    server = start_service(workflows={"adw_sleep": spec})
    first_board = server.client()
    first = first_board.trigger("adw_sleep", adw_id="dup1", issue_number="5")
    first_board.wait_for(lambda m: m["data"].get("status") == "started")
    # A board that reconnected re-sends its queued trigger.
    second_board = server.client()
    again = second_board.trigger("adw_sleep", adw_id="dup1", issue_number="5")
    for key in ("status", "adw_id", "workflow_name", "logs_path"):
        assert again["data"][key] == first["data"][key]
    release.touch()
    assert first_board.wait_terminal("dup1")["data"]["status"] == "completed"
    types = [e.type for e in server.events() if e.stream == "workflow:dup1"]
    assert types.count("run_queued") == 1
    assert types.count("run_started") == 1
    assert types.count("trigger_deduplicated") == 1
    assert len((tmp_path / "trace").read_text().splitlines()) == 2  # one start, one end


def test_same_adw_id_other_workflow_type_is_a_new_run_after_the_first(
    start_service: Start, tmp_path: Path
) -> None:
    (tmp_path / "go").touch()
    sleep = WorkflowSpec(env={"ADW_RELEASE_FILE": str(tmp_path / "go")})
    server = start_service(max_concurrent=2, workflows={"adw_sleep": sleep})
    client = server.client()
    client.trigger("adw_plan_iso", adw_id="chain1")
    client.trigger("adw_sleep", adw_id="chain1")  # same work dir: waits for the plan
    finals = [client.wait_terminal("chain1"), client.wait_terminal("chain1")]
    assert [f["data"]["workflow_name"] for f in finals] == ["adw_plan_iso", "adw_sleep"]
    assert all(f["data"]["status"] == "completed" for f in finals)
    client.trigger("adw_build_iso", adw_id="chain1")  # its plan completed: accepted
    assert client.wait_terminal("chain1")["data"]["status"] == "completed"
    build_log = (server.data_dir / "agents/chain1/adw_build_iso/execution.log").read_text()
    assert "plan.md" in build_log


def test_cancel_running_and_queued_runs(start_service: Start, tmp_path: Path) -> None:
    _release, spec = _sleep_spec(tmp_path)
    server = start_service(max_concurrent=1, workflows={"adw_sleep": spec})
    client = server.client()
    client.trigger("adw_sleep", adw_id="run1")
    client.trigger("adw_sleep", adw_id="wait1")
    client.wait_for(lambda m: m["data"].get("status") == "started")
    client.send({"type": "cancel_workflow", "data": {"adw_id": "wait1", "reason": "not needed"}})
    queued = client.wait_terminal("wait1")
    assert queued["data"]["status"] == "failed"
    assert queued["data"]["current_step"] == "Cancelled"
    assert queued["data"]["cancelled"] is True  # what programs branch on
    assert "not needed" in queued["data"]["message"]
    client.send({"type": "cancel_workflow", "data": {"adw_id": "run1", "reason": "stop it"}})
    running = client.wait_terminal("run1")
    assert running["data"]["status"] == "failed"
    assert running["data"]["current_step"] == "Cancelled"
    assert running["data"]["cancelled"] is True  # what programs branch on
    assert "stop it" in running["data"]["message"]


def test_cancel_of_unknown_run_is_not_found(server: Running) -> None:
    client = server.client()
    client.send({"type": "cancel_workflow", "data": {"adw_id": "ghost"}})
    error = client.wait_for(lambda m: m["type"] == "error")
    assert error["data"]["code"] == "not_found"
    assert error["data"]["details"]["field"] == "data.adw_id"


def test_timeout_kills_the_run(start_service: Start, tmp_path: Path) -> None:
    _release, spec = _sleep_spec(tmp_path, timeout_s=0.3)
    server = start_service(workflows={"adw_sleep": spec})
    client = server.client()
    client.trigger("adw_sleep", adw_id="slow1")
    final = client.wait_terminal("slow1")
    assert final["data"]["status"] == "failed"
    assert "timed out after 0.3 s" in final["data"]["message"]


def test_a_workflow_that_cannot_start_fails_with_the_reason(start_service: Start) -> None:
    spec = WorkflowSpec(argv=("/nonexistent/adw-binary", "{adw_id}"))
    server = start_service(workflows={"adw_broken": spec})
    client = server.client()
    client.trigger("adw_broken", adw_id="broken1")
    final = client.wait_terminal("broken1")
    assert final["data"]["status"] == "failed"
    assert "could not start" in final["data"]["message"]


def test_custom_argv_template_and_env(start_service: Start, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    code = "import os,sys; open(sys.argv[1],'w').write(os.environ['GREETING'] + ' ' + sys.argv[2])"
    spec = WorkflowSpec(
        argv=("{python}", "-c", code, str(out), "{issue_number}-{adw_id}"),
        cwd=str(tmp_path),
        env={"GREETING": "hello {workflow_type}"},
    )
    server = start_service(workflows={"adw_custom": spec}, python=sys.executable)
    client = server.client()
    client.trigger("adw_custom", adw_id="cust1", issue_number=9)
    assert client.wait_terminal("cust1")["data"]["status"] == "completed"
    assert out.read_text() == "hello adw_custom 9-cust1"


def test_kanban_trigger_fields_reach_the_workflow(start_service: Start, tmp_path: Path) -> None:
    out = tmp_path / "seen.json"
    code = (
        "import json,os,sys; t=json.load(open(os.environ['ADW_TRIGGER_FILE']));"
        "open(sys.argv[1],'w').write(json.dumps(t))"
    )
    spec = WorkflowSpec(argv=("{python}", "-c", code, str(out)))
    server = start_service(workflows={"adw_kanban": spec})
    client = server.client()
    client.trigger(
        "adw_kanban",
        adw_id="kb1",
        issue_type="bug",
        issue_json={"title": "Fix it", "number": 12},
        stages=["plan", "build"],
        config={"auto_merge": False},
    )
    assert client.wait_terminal("kb1")["data"]["status"] == "completed"
    seen = json.loads(out.read_text())
    assert seen["issue_json"] == {"title": "Fix it", "number": 12}
    assert seen["stages"] == ["plan", "build"]
    assert seen["issue_type"] == "bug"
    assert seen["config"] == {"auto_merge": False}


def test_trigger_responses_keep_the_order_of_triggers(server: Running) -> None:
    client = server.client()
    for i in range(20):
        data = {"workflow_type": "adw_plan_iso", "adw_id": f"ord{i}"}
        if i % 2:
            data["model_set"] = "giant"  # invalid: rejected by the connection itself
        client.send({"type": "trigger_workflow", "data": data})
    responses = [client.wait_for(lambda m: m["type"] == "trigger_response") for _ in range(20)]
    assert [r["data"]["adw_id"] for r in responses] == [f"ord{i}" for i in range(20)]
    assert [r["data"]["status"] for r in responses] == ["accepted", "rejected"] * 10


def test_children_learn_the_server_url(start_service: Start, tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    code = (
        "import json,os,sys; json.dump({{k: os.environ.get(k) for k in "
        "('WEBSOCKET_URL', 'WEBSOCKET_PORT', 'ADWD_URL', 'ADWD_WS_URL', 'ADW_DB_ONLY')}}, "
        "open(sys.argv[1], 'w'))"
    )
    spec = WorkflowSpec(argv=("{python}", "-c", code, str(out)))
    server = start_service(workflows={"adw_env": spec})
    client = server.client()
    client.trigger("adw_env", adw_id="env1")
    client.wait_terminal("env1")
    port = server.service.port
    assert json.loads(out.read_text()) == {
        "WEBSOCKET_URL": f"http://127.0.0.1:{port}",  # the notifier's HTTP base URL
        "WEBSOCKET_PORT": str(port),
        "ADWD_URL": f"http://127.0.0.1:{port}",
        "ADWD_WS_URL": f"ws://127.0.0.1:{port}/ws/trigger",
        "ADW_DB_ONLY": "false",
    }
