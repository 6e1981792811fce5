"""What Kanban boards read: stage transitions and log lines of runs."""

from __future__ import annotations

from collections.abc import Callable

from adwd.actors.catalogue import WorkflowSpec
from tests.integration.conftest import Running


def test_a_card_moves_through_its_stages(server: Running) -> None:
    board = server.client()
    board.trigger("adw_plan_iso", adw_id="card1")
    board.wait_terminal("card1")
    board.trigger("adw_build_iso", adw_id="card1", trigger_reason="#fail")
    board.wait_terminal("card1")
    moves = [
        (m["data"]["from_stage"], m["data"]["to_stage"])
        for m in board.seen
        if m["type"] == "stage_transition"
    ]
    # plan starts (backlog -> plan), completes (plan -> build); build starts where the card
    # is, fails (build -> errored).
    assert moves == [("backlog", "plan"), ("plan", "build"), ("build", "errored")]
    move = next(m for m in board.seen if m["type"] == "stage_transition")
    assert move["data"]["workflow_name"] == "adw_plan_iso"
    assert move["data"]["timestamp"].endswith("+00:00")


def test_log_lines_reach_boards_with_levels(server: Running) -> None:
    board = server.client()
    board.trigger("adw_plan_iso", adw_id="logs1", trigger_reason="#fail")
    board.wait_terminal("logs1")
    lines = [m["data"] for m in board.seen if m["type"] == "workflow_log"]
    assert lines, "the example workflows print ordinary lines"
    assert all(line["adw_id"] == "logs1" for line in lines)
    assert {line["level"] for line in lines} <= {"INFO", "SUCCESS", "WARNING", "ERROR"}
    assert any("#fail" in line["message"] for line in lines)  # its stderr line too


def test_a_chatty_workflow_cannot_flood_a_board(start_service: Callable[..., Running]) -> None:
    code = "import sys\nfor i in range(3000):\n    print('line', i)\n"
    server = start_service(
        log_lines_per_s=10.0,
        workflows={"adw_chatty": WorkflowSpec(argv=("{python}", "-c", code))},
    )
    board = server.client()
    board.trigger("adw_chatty", adw_id="flood1")
    board.wait_terminal("flood1")
    lines = [m["data"] for m in board.seen if m["type"] == "workflow_log"]
    assert len(lines) < 200  # burst of 50, then 10 per second: nowhere near 3000
    assert "not shown (rate limit)" in lines[-1]["message"]
    log = (server.data_dir / "agents/flood1/adw_chatty/execution.log").read_text()
    assert "line 2999" in log  # the log file keeps everything
