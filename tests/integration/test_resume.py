"""Resume after reconnect: exactly the missed events, in order, then live with no
gap and no duplicate at the seam; a plain connect gets the current state."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adwd.actors.catalogue import WorkflowSpec
from adwd.actors.wireview import wire_messages
from tests.integration.conftest import Client, Running

Start = Callable[..., Running]


def _expected(server: Running, since: int, adw_ids: set[str] | None = None) -> list[tuple]:
    """(type, seq, body) of every broadcast message the log holds after ``since``."""
    out = []
    for stored in server.events():
        if stored.seq <= since:
            continue
        for target, adw_id, frame in wire_messages(stored):
            if target is None and (adw_ids is None or adw_id is None or adw_id in adw_ids):
                out.append(_key(json.loads(frame)))
    return out


def _key(message: dict[str, Any]) -> tuple:
    return (message["type"], message.get("seq"), json.dumps(message["data"], sort_keys=True))


def _stream(client: Client) -> list[tuple]:
    """Event-derived broadcast messages received after the (last) subscribed message."""
    seen = client.seen
    marks = [i for i, m in enumerate(seen) if m["type"] == "subscribed"]
    after = seen[marks[-1] + 1 :] if marks else seen
    return [_key(m) for m in after if m.get("seq") is not None and m["type"] != "trigger_response"]


def _finished(client: Client, adw_id: str) -> None:
    """Wait for a run's last message: its final workflow_metrics."""
    client.wait_for(
        lambda m: (
            m["type"] == "workflow_metrics"
            and m["data"]["adw_id"] == adw_id
            and m["data"]["phase"] == "final"
        )
    )


def _position(client: Client, adw_id: str, position: int) -> dict[str, Any]:
    """Wait for the queue_status telling ``adw_id`` it is at ``position``."""
    return client.wait_for(
        lambda m: (
            m["type"] == "queue_status"
            and m["data"]["adw_id"] == adw_id
            and m["data"]["position"] == position
        )
    )


def _sleep(tmp_path: Path) -> tuple[Path, dict[str, WorkflowSpec]]:
    release = tmp_path / "release"
    return release, {"adw_sleep": WorkflowSpec(env={"ADW_RELEASE_FILE": str(release)})}


def test_resume_gets_exactly_the_missed_events_then_live(
    start_service: Start, tmp_path: Path
) -> None:
    release, workflows = _sleep(tmp_path)
    server = start_service(workflows=workflows)
    first = server.client()
    first.trigger("adw_sleep", adw_id="res1")
    first.wait_for(lambda m: m["data"].get("status") == "running")
    last_seen = max(m["seq"] for m in first.seen if m.get("seq"))
    first.close()
    server.clients.remove(first)

    # While it is away: the run completes and another one runs.
    other = server.client()
    release.touch()
    other.wait_terminal("res1")
    other.trigger("adw_plan_iso", adw_id="res2")
    other.wait_terminal("res2")

    back = server.client()
    back.send({"type": "subscribe", "data": {"since": last_seen}})
    subscribed = back.wait_for(lambda m: m["type"] == "subscribed")
    assert subscribed["data"]["recovered"] is True
    assert subscribed["data"]["resume_from"] == last_seen
    missed = _expected(server, last_seen)
    assert missed, "events happened while the client was away"
    # Live again: a new run after the resume reaches it too.
    other.trigger("adw_plan_iso", adw_id="res3")
    _finished(back, "res3")
    received = [k for k in _stream(back) if k[1] > last_seen]
    assert received == _expected(server, last_seen)  # missed + live: no gap, no duplicate
    seqs = [k[1] for k in received]
    assert seqs == sorted(seqs)


def test_resume_from_the_url_and_only_for_chosen_runs(start_service: Start) -> None:
    server = start_service()
    board = server.client()
    for adw_id in ("url1", "url2"):
        board.trigger("adw_plan_iso", adw_id=adw_id)
        board.wait_terminal(adw_id)
    since = 0
    late = server.client(f"/ws/trigger?since={since}")
    late.wait_for(lambda m: m["type"] == "subscribed")
    board.trigger("adw_plan_iso", adw_id="url3")
    _finished(late, "url3")
    assert _stream(late) == _expected(server, since)

    picky = server.client()
    picky.send({"type": "subscribe", "data": {"since": 0, "adw_ids": ["url2"]}})
    picky.wait_for(lambda m: m["type"] == "subscribed")
    board.trigger("adw_plan_iso", adw_id="url4")
    board.wait_terminal("url4")
    rerun = board.trigger("adw_plan_iso", adw_id="url2")["seq"]  # the followed card again
    picky.wait_for(lambda m: m["data"].get("status") == "completed" and m["seq"] > rerun)
    followed = {json.loads(k[2]).get("adw_id") for k in _stream(picky)}
    assert followed == {"url2"}


def test_unrecoverable_resume_says_so_and_sends_the_current_state(
    start_service: Start, tmp_path: Path
) -> None:
    release, workflows = _sleep(tmp_path)
    server = start_service(workflows=workflows)
    board = server.client()
    board.trigger("adw_sleep", adw_id="cur1")
    board.wait_for(lambda m: m["data"].get("status") == "running")

    for data in ({"since": 10_000}, {"since": 1, "epoch": "not-this-log"}):
        client = server.client()
        client.send({"type": "subscribe", "data": data})
        subscribed = client.wait_for(lambda m: m["type"] == "subscribed")
        assert subscribed["data"]["recovered"] is False
        assert subscribed["data"]["message"]
        state = client.wait_for(lambda m: m["type"] == "status_update")
        assert state["data"]["adw_id"] == "cur1"
        assert state["data"]["status"] == "running"

    plain = server.client()  # no since at all: the current state, no subscribed message
    state = plain.wait_for(lambda m: m["type"] == "status_update")
    assert (state["data"]["adw_id"], state["data"]["status"]) == ("cur1", "running")
    release.touch()
    assert plain.wait_terminal("cur1")["data"]["status"] == "completed"
    assert not any(m["type"] == "subscribed" for m in plain.seen)


def test_resume_seam_under_a_stream_of_progress(start_service: Start, tmp_path: Path) -> None:
    code = (
        "import json, os, time\n"
        "for i in range(600):\n"
        "    print('ADW-PROGRESS ' + json.dumps({{'progress_percent': i % 100}}), flush=True)\n"
        "    time.sleep(0.002)\n"
    )
    server = start_service(workflows={"adw_chatty": WorkflowSpec(argv=("{python}", "-c", code))})
    board = server.client()
    board.trigger("adw_chatty", adw_id="seam1")
    board.wait_for(lambda m: m["data"].get("progress_percent", 0) >= 50)
    since = max(m["seq"] for m in board.seen if m.get("seq"))
    # Subscribing mid-stream: replay and live meet while events keep coming.
    joiner = server.client()
    joiner.send({"type": "subscribe", "data": {"since": since}})
    _finished(joiner, "seam1")
    board.wait_terminal("seam1")
    got = [k for k in _stream(joiner) if k[1] > since]
    assert got == _expected(server, since)


def test_queue_status_on_position_change_and_on_request(
    start_service: Start, tmp_path: Path
) -> None:
    release, workflows = _sleep(tmp_path)
    # Every change at once: the release ends the runs faster than any interval.
    server = start_service(max_concurrent=1, workflows=workflows, queue_status_interval_s=0)
    board = server.client()
    for adw_id in ("q1", "q2", "q3"):
        board.trigger("adw_sleep", adw_id=adw_id)
    # (q3 may first see position 3: q1 counts as waiting until its start is committed.)
    q3 = _position(board, "q3", 2)
    assert q3["data"]["queue_length"] == 2
    assert q3["data"]["estimated_wait_time"] >= 0
    board.unclaimed = [m for m in board.unclaimed if m["type"] != "queue_status"]
    board.send({"type": "get_queue_status"})
    asked = [board.wait_for(lambda m: m["type"] == "queue_status") for _ in range(2)]
    assert {(m["data"]["adw_id"], m["data"]["position"]) for m in asked} == {("q2", 1), ("q3", 2)}
    release.touch()  # q1 ends, q2 starts: q3 moves up
    moved = _position(board, "q3", 1)
    assert moved["data"]["queue_length"] == 1
    board.wait_terminal("q3")

    idle = server.client()
    idle.send({"type": "get_queue_status"})
    status = idle.wait_for(lambda m: m["type"] == "queue_status")
    assert (status["data"]["position"], status["data"]["queue_length"]) == (0, 0)


def test_a_position_that_changes_quickly_is_sent_when_the_interval_ends(
    start_service: Start, tmp_path: Path
) -> None:
    release, workflows = _sleep(tmp_path)
    server = start_service(max_concurrent=1, workflows=workflows, queue_status_interval_s=0.5)
    board = server.client()
    for adw_id in ("h1", "h2", "h3"):  # h1 runs (held), h2 and h3 wait
        board.trigger("adw_sleep", adw_id=adw_id)
    _position(board, "h3", 2)  # (first 3, if h1's start was not yet committed)
    board.send({"type": "cancel_workflow", "data": {"adw_id": "h2"}})
    # h3 moves up at once, within the interval of the position it was told: the move
    # is held back, then sent as it is when the interval ends.
    moved = _position(board, "h3", 1)
    assert moved["data"]["queue_length"] == 1
    h3 = [m for m in board.seen if m["type"] == "queue_status" and m["data"]["adw_id"] == "h3"]
    assert [m["data"]["position"] for m in h3][-2:] == [2, 1]
    release.touch()
    board.wait_terminal("h3")


def test_workflow_metrics_at_start_and_end(server: Running) -> None:
    board = server.client()
    adw_id = board.trigger("adw_plan_iso")["data"]["adw_id"]
    start = board.wait_for(lambda m: m["type"] == "workflow_metrics")
    assert start["data"]["phase"] == "start"
    final = board.wait_for(lambda m: m["type"] == "workflow_metrics")
    assert final["data"]["adw_id"] == adw_id
    assert final["data"]["phase"] == "final"
    assert final["data"]["execution_time"] > 0
    usage = final["data"]["resource_usage"]
    assert usage["cpu_user_s"] + usage["cpu_system_s"] > 0
    assert usage["max_rss_kb"] > 0
    assert final["data"]["performance_score"] == 100.0  # no history: typical by definition
    second = board.trigger("adw_plan_iso")["data"]["adw_id"]
    started = board.wait_for(
        lambda m: m["type"] == "workflow_metrics" and m["data"]["adw_id"] == second
    )
    assert started["data"]["expected_execution_time"] == final["data"]["execution_time"]
    again = board.wait_for(
        lambda m: m["type"] == "workflow_metrics" and m["data"]["adw_id"] == second
    )
    assert 0 < again["data"]["performance_score"] <= 100


def test_subscribe_right_after_a_trigger_keeps_its_trigger_response(server: Running) -> None:
    board = server.client()
    for i in range(10):
        board.send({"type": "trigger_workflow",
                    "data": {"workflow_type": "adw_plan_iso", "adw_id": f"tr{i}"}})  # fmt: skip
        board.send({"type": "subscribe", "data": {"since": 0}})
    responses = [board.wait_for(lambda m: m["type"] == "trigger_response") for _ in range(10)]
    assert [r["data"]["adw_id"] for r in responses] == [f"tr{i}" for i in range(10)]


def test_a_trigger_sent_on_connect_sees_every_event_of_its_run(server: Running) -> None:
    # The board triggers before its state has even arrived: the command waits for the
    # connection's catch-up, so the run starts after the snapshot and the board gets
    # trigger_response, then status_update "started"..., never a state that folded
    # them in. (Before the fix, "started" went missing under load.)
    for i in range(5):
        board = server.client()
        board.send({"type": "trigger_workflow",
                    "data": {"workflow_type": "adw_plan_iso", "adw_id": f"now{i}"}})  # fmt: skip
        board.wait_terminal(f"now{i}")
        mine = [m for m in board.seen if m["data"].get("adw_id") == f"now{i}"]
        types = [m["type"] for m in mine]
        statuses = [m["data"]["status"] for m in mine if m["type"] == "status_update"]
        assert types[0] == "trigger_response"
        assert statuses[0] == "started"
        assert statuses[-1] == "completed"
        board.close()
