"""The agent stream's mapping and bounds, pure."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adwd.actors.agentstream import AgentStream, cut, notifier_activity
from adwd.actors.wireview import wire_messages
from adwd.events.domain import AgentActivity, AgentOffsets
from adwd.events.store import StoredEvent


def _assistant(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"type": "assistant", "message": {"content": list(blocks)}}


def _shown(event: AgentActivity) -> dict[str, Any]:
    """What a board receives for the event (through the real wire view)."""
    stored = StoredEvent(7, 0.0, "workflow:a1", "agent_activity", 1, "system", "", event)
    [(_target, _adw, frame)] = wire_messages(stored)
    return msgspec.json.decode(frame)


def test_the_original_mapping_of_stream_json_records() -> None:
    stream = AgentStream("a1", "adw_build_iso")
    records = [
        {"type": "system", "subtype": "init", "model": "m", "tools": ["a", "b"]},
        _assistant({"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "hi"}),
        _assistant({"type": "tool_use", "id": "t1", "name": "Bash", "input": {"cmd": "ls"}}),
        {"type": "user", "message": {"content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "x", "is_error": True}]}},
        {"type": "result", "subtype": "success", "num_turns": 2, "duration_ms": 10},
        {"type": "unknown"},
        "not an object",
    ]  # fmt: skip
    events = stream.records([("impl/raw_output.jsonl", r) for r in records], {"x": [1, 2]}, 1.0)
    kinds = [e.kind for e in events if isinstance(e, AgentActivity)]
    assert kinds == [
        "agent_log",
        "thinking_block",
        "text_block",
        "tool_use_pre",
        "tool_use_post",
        "agent_log",
    ]
    assert events[-1] == AgentOffsets(
        adw_id="a1", workflow_type="adw_build_iso", offsets={"x": [1, 2]}
    )
    post = _shown(events[4])  # type: ignore[arg-type]
    assert post["seq"] == 7
    assert post["data"]["tool_name"] == "Bash"  # remembered from its tool_use
    assert (post["data"]["status"], post["data"]["success"]) == ("error", False)
    assert post["data"]["output"] == post["data"]["tool_output"] == "x"
    assert post["timestamp"] == post["data"]["timestamp"]


def test_long_content_is_cut_and_the_cut_noted() -> None:
    stream = AgentStream("a1", "w", max_chars=10)
    record = _assistant({"type": "text", "text": "y" * 25})
    [event, _] = stream.records([("i/raw_output.jsonl", record)], {}, 0.0)
    assert isinstance(event, AgentActivity)
    assert event.data["truncated"] is True
    assert event.data["content"].startswith("y" * 10)
    assert "cut 15 of 25" in event.data["content"]
    assert cut("short") == ("short", False)


def test_a_skipped_record_is_noted() -> None:
    [note, _] = AgentStream("a1", "w").records([("i/raw_output.jsonl", 5_000_000)], {}, 0.0)
    assert isinstance(note, AgentActivity)
    assert note.kind == "agent_log"
    assert "5000000 bytes" in note.data["message"]


# Slow generation on a shared 2-core machine is not what this test is about.
@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    batches=st.lists(st.tuples(st.integers(0, 400), st.floats(0.0, 3.0)), min_size=1, max_size=30)
)
def test_the_gate_bounds_a_run_and_accounts_for_every_record(
    batches: list[tuple[int, float]],
) -> None:
    stream = AgentStream("a1", "w", rate=50.0, burst=100)
    now, sent, noted, records = 0.0, 0, 0, 0
    start = batches[0][1]  # the gate's clock starts at its first record
    text = _assistant({"type": "text", "text": "t"})
    for count, gap in batches:
        now += gap
        records += count
        for event in stream.records([("i/raw_output.jsonl", text)] * count, None, now):
            assert isinstance(event, AgentActivity)
            if event.kind == "text_block":
                sent += 1
            else:
                noted += int(event.data["message"].split()[0])
    for event in stream.final(now):
        assert isinstance(event, AgentActivity)
        noted += int(event.data["message"].split()[0])
    assert sent + noted == records  # each record shown or counted in a note
    assert sent <= 100 + 50 * (now - start) + 1  # never more than the burst plus the rate


def test_the_notifier_shapes_carry_both_names() -> None:
    kind, data = notifier_activity(
        "a1", "file_operation", {"file_path": "f", "operation": "write"}, 0.0
    )
    assert kind == "file_changed"
    assert data["operation"] == data["change_type"] == "write"
    kind, data = notifier_activity(
        "a1", "tool_execution_pre", {"tool_name": "Read", "input": {"p": 1}}, 0.0
    )
    assert (kind, data["input"], data["tool_input"]) == ("tool_use_pre", {"p": 1}, {"p": 1})
    kind, data = notifier_activity(
        "a1", "tool_execution_post", {"output": "o", "success": False}, 0.0
    )
    assert (data["status"], data["success"], data["output"]) == ("error", False, "o")


def test_the_notifier_takes_either_name_of_a_tools_input_and_output() -> None:
    fields = {"tool_name": "Edit", "input": None, "tool_input": {"p": 2}}
    _, pre = notifier_activity("a1", "tool_execution_pre", fields, 0.0)
    assert pre["input"] == pre["tool_input"] == {"p": 2}
    fields = {"tool_name": "Edit", "output": None, "tool_output": "done"}
    _, post = notifier_activity("a1", "tool_execution_post", fields, 0.0)
    assert post["output"] == post["tool_output"] == "done"


def test_a_clock_stepped_back_neither_grants_nor_starves() -> None:
    stream = AgentStream("a1", "w", rate=10.0, burst=1)
    text = _assistant({"type": "text", "text": "t"})
    assert len(stream.records([("i/raw_output.jsonl", text)], None, 100.0)) == 1
    held = stream.records([("i/raw_output.jsonl", text)], None, 50.0)  # no token yet
    assert [e.kind for e in held if isinstance(e, AgentActivity)] == ["agent_log"]  # the note
    assert len(stream.records([("i/raw_output.jsonl", text)], None, 50.2)) >= 1
