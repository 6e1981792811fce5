"""request_id: replies carry the request's id, and a re-sent command is answered
again, never executed twice."""

from __future__ import annotations

from tests.integration.conftest import Running


def test_replies_echo_the_request_id(server: Running) -> None:
    client = server.client()
    client.send({"type": "ping", "request_id": "p1"})
    assert client.wait_for(lambda m: m["type"] == "pong")["request_id"] == "p1"
    client.send({"type": "trigger_workflow", "request_id": "t1", "data": {"workflow_type": "x!"}})
    assert client.wait_for(lambda m: m["type"] == "error")["request_id"] == "t1"
    rejected = client.wait_for(lambda m: m["type"] == "trigger_response")
    assert (rejected["request_id"], rejected["data"]["status"]) == ("t1", "rejected")
    client.send({"type": "cancel_workflow", "request_id": "c1", "data": {"adw_id": "nope"}})
    assert client.wait_for(lambda m: m["type"] == "error")["request_id"] == "c1"
    cancel = client.wait_for(lambda m: m["type"] == "cancel_response")
    assert (cancel["request_id"], cancel["data"]["status"]) == ("c1", "not_found")
    client.send({"type": "subscribe", "request_id": "s1", "data": {"since": 0}})
    assert client.wait_for(lambda m: m["type"] == "subscribed")["request_id"] == "s1"
    client.send({"type": "get_queue_status", "request_id": "q1"})
    assert client.wait_for(lambda m: m["type"] == "queue_status")["request_id"] == "q1"


def test_several_commands_in_flight_are_matched_by_request_id(server: Running) -> None:
    client = server.client()
    for i in range(5):
        data = {"workflow_type": "adw_plan_iso", "adw_id": f"inflight{i}"}
        client.send({"type": "trigger_workflow", "request_id": f"r{i}", "data": data})
        client.send({"type": "ping", "request_id": f"ping{i}"})
    replies = {}
    while len(replies) < 10:
        m = client.wait_for(lambda m: m["type"] in ("trigger_response", "pong"))
        replies[m["request_id"]] = m
    for i in range(5):
        assert replies[f"r{i}"]["data"]["adw_id"] == f"inflight{i}"


def test_a_resent_trigger_is_not_executed_twice(server: Running) -> None:
    first = server.client()
    trigger = {
        "type": "trigger_workflow",
        "request_id": "once-1",
        "data": {"workflow_type": "adw_plan_iso"},
    }  # fmt: skip  (no adw_id: server picks)
    first.send(trigger)
    accepted = first.wait_for(lambda m: m["type"] == "trigger_response")
    adw_id = accepted["data"]["adw_id"]
    first.wait_terminal(adw_id)
    # The client lost the connection before it saw the answer and sends it again, even
    # after the run ended: same answer, same adw_id, no second run.
    second = server.client()
    second.send(trigger)
    again = second.wait_for(lambda m: m["type"] == "trigger_response")
    assert again["request_id"] == "once-1"
    assert again["data"]["adw_id"] == adw_id
    assert again["data"]["status"] == "accepted"
    runs = [e for e in server.events() if e.type == "run_queued"]
    assert len(runs) == 1
