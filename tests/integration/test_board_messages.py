"""The board's own messages are answered, not refused as unknown types."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from adwd.actors.catalogue import WorkflowSpec
from tests.integration.conftest import Running, release_env

Start = Callable[..., Running]


def test_one_sessions_tabs_are_counted_once(server: Running) -> None:
    tab1, tab2 = server.client(), server.client()
    for tab, count in ((tab1, 1), (tab2, 2)):
        tab.send({"type": "register_session", "data": {"session_id": "sess-1",
                                                       "client_info": {"ua": "x"}}})  # fmt: skip
        reply = tab.wait_for(lambda m: m["type"] == "session_registered")
        assert reply["data"] == {
            "session_id": "sess-1",
            "message": "Session registered successfully",
            "connections": count,
        }
    tab1.send({"type": "register_session", "data": {}})
    error = tab1.wait_for(lambda m: m["type"] == "error")
    assert error["data"]["code"] == "validation_error"
    assert error["data"]["details"]["field"] == "data.session_id"


def test_a_restarted_card_cancels_its_previous_run(start_service: Start, tmp_path: Path) -> None:
    _release, env = release_env(tmp_path)
    server = start_service(workflows={"adw_sleep": WorkflowSpec(env=env, timeout_s=60)})
    board = server.client()
    board.trigger("adw_sleep", adw_id="old1")
    board.wait_for(lambda m: m["type"] == "status_update" and m["data"]["status"] == "started")
    board.send({
        "type": "ticket_notification",
        "data": {"id": 17, "title": "Dark mode", "stage": "build", "old_adw_id": "old1"},
    })  # fmt: skip
    board.send({"type": "ping", "request_id": "after"})
    reply = board.wait_for(lambda m: m["type"] == "ticket_notification_response")
    assert (reply["data"]["status"], reply["data"]["ticket_id"]) == ("received", "17")
    assert reply["data"]["cleaned_up"] == "old1"
    assert "work removed" in reply["data"]["message"]
    end = board.wait_terminal("old1")
    assert end["data"]["cancelled"] is True
    assert not (server.data_dir / "agents" / "old1").exists()
    # Replies keep the order of requests: the ping sent after waited for the cleanup.
    board.wait_for(lambda m: m["type"] == "pong")
    types = [m["type"] for m in board.seen if m["type"] in ("pong", "ticket_notification_response")]
    assert types == ["ticket_notification_response", "pong"]
    board.send({"type": "ticket_notification", "data": {"id": "t2", "title": "New card"}})
    reply = board.wait_for(lambda m: m["type"] == "ticket_notification_response")
    assert reply["data"]["cleaned_up"] is None


def test_a_boards_workflow_log_reaches_the_runs_followers_with_seq(server: Running) -> None:
    sender, follower = server.client(), server.client()
    follower.send({"type": "subscribe", "data": {}})  # live from here on
    follower.wait_for(lambda m: m["type"] == "subscribed")
    line = {
        "adw_id": "lg1",
        "workflow_name": "adw_plan_iso",
        "message": "from the board",
        "level": "INFO",
        "timestamp": "2025-01-01T00:00:00Z",
    }
    sender.send({"type": "workflow_log", "data": line})
    got = follower.wait_for(lambda m: m["type"] == "workflow_log")
    assert got["data"]["message"] == "from the board"
    assert isinstance(got["seq"], int)
    sender.send({"type": "workflow_log", "data": {**line, "level": "LOUD"}})
    assert sender.wait_for(lambda m: m["type"] == "error")["data"]["code"] == "validation_error"
