"""Issue 11 against the real service: dependencies, composite workflows and
their cards, retries, user recovery, timeouts, terminate, drag-and-drop."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adwd.actors.catalogue import RetryPolicy, WorkflowSpec
from adwd.actors.processes import group_members
from adwd.events.domain import ErrorReported, RecoveryOffered, RunQueued
from tests.integration.conftest import TIMEOUT, Client, Running

Start = Callable[..., Running]
NO_RETRY = RetryPolicy(maximum_attempts=1)


def _adw(server: Running, adw_id: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{server.service.port}/api/adws/{adw_id}"
    with urllib.request.urlopen(url, timeout=10) as reply:
        body: dict[str, Any] = json.loads(reply.read())
    return body


def _adw_at(server: Running, adw_id: str, seq: int) -> dict[str, Any]:
    """``/api/adws/<id>`` once it has folded ``seq``."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        body = _adw(server, adw_id)
        if body.get("seq", 0) >= seq or time.monotonic() > deadline:
            return body
        time.sleep(0.02)  # polling an HTTP read model: no event to wait on


def _moves(client: Client, adw_id: str) -> list[tuple[str, str]]:
    return [
        (m["data"]["from_stage"], m["data"]["to_stage"])
        for m in client.seen
        if m["type"] == "stage_transition" and m["data"]["adw_id"] == adw_id
    ]


def _kind(message: dict[str, Any], kind: str, adw_id: str) -> bool:
    return bool(message["type"] == kind and message["data"].get("adw_id") == adw_id)


# -- dependencies -------------------------------------------------------------


def test_a_build_needs_the_adw_id_of_a_completed_plan(server: Running) -> None:
    client = server.client()
    missing = client.trigger("adw_build_iso")["data"]
    assert (missing["status"], missing["error"]) == ("rejected", "conflict")
    assert "give the adw_id" in missing["message"]
    assert missing["details"]["requires"] == ["plan"]

    unknown = client.trigger("adw_build_iso", adw_id="nobody01")["data"]
    assert (unknown["status"], unknown["error"]) == ("rejected", "conflict")
    assert "No run has adw_id 'nobody01'" in unknown["message"]

    client.trigger("adw_plan_iso", adw_id="failed01", trigger_reason="#fail")
    assert client.wait_terminal("failed01")["data"]["status"] == "failed"
    failed = client.trigger("adw_build_iso", adw_id="failed01")["data"]
    assert (failed["status"], failed["error"]) == ("rejected", "conflict")
    assert failed["details"]["missing"] == ["plan"]
    assert "completed plan" in failed["message"]

    adw_id = client.planned("good0001")
    accepted = client.trigger("adw_build_iso", adw_id=adw_id)["data"]
    assert accepted["status"] == "accepted"
    assert client.wait_terminal(adw_id)["data"]["status"] == "completed"


def test_a_composite_covers_its_stages_for_later_runs(server: Running) -> None:
    client = server.client()
    client.trigger("adw_plan_build_iso", adw_id="combo001")
    assert client.wait_terminal("combo001")["data"]["status"] == "completed"
    assert client.trigger("adw_test_iso", adw_id="combo001")["data"]["status"] == "accepted"
    assert client.wait_terminal("combo001")["data"]["status"] == "completed"


# -- composites and the card --------------------------------------------------

COMPOSITES = {
    "adw_sdlc_iso": ["plan", "build", "test", "review", "document", "ready-to-merge"],
    "adw_plan_build_test_iso": ["plan", "build", "test", "review"],
    "adw_sdlc_ZTE_iso": ["plan", "build", "test", "review", "document", "pr", "completed"],
}


def test_composite_cards_only_move_forward_and_agree_after_a_restart(
    start_service: Start, tmp_path: Path
) -> None:
    server = start_service(max_concurrent=3)
    client = server.client()
    for workflow_type in COMPOSITES:
        client.trigger(workflow_type, adw_id=f"c-{workflow_type[4:20]}")
    finals = {}
    for workflow_type in COMPOSITES:
        adw_id = f"c-{workflow_type[4:20]}"
        finals[workflow_type] = client.wait_terminal(adw_id)
    server.service.stop()
    again = start_service(max_concurrent=3)
    for workflow_type, expected in COMPOSITES.items():
        adw_id = f"c-{workflow_type[4:20]}"
        assert finals[workflow_type]["data"]["status"] == "completed", finals[workflow_type]
        moves = _moves(client, adw_id)
        assert [to for _, to in moves] == expected, (workflow_type, moves)
        assert moves[0][0] == "backlog"
        body = _adw_at(again, adw_id, finals[workflow_type]["seq"])
        assert body["current_stage"] == expected[-1]
        assert body["runs"][-1]["status"] == "completed"


def test_the_orchestrator_gets_its_stages_as_arguments(server: Running) -> None:
    client = server.client()
    client.trigger("adw_orchestrator", adw_id="orch0001", stages=["plan", "build"])
    assert client.wait_terminal("orch0001")["data"]["status"] == "completed"
    assert [to for _, to in _moves(client, "orch0001")] == ["plan", "build", "test"]
    log = (server.data_dir / "agents/orch0001/adw_orchestrator/execution.log").read_text()
    assert "--stages plan,build" in log.splitlines()[0]


# -- retries, reports and recovery --------------------------------------------


def test_a_spawn_failure_is_retried_with_backoff_then_reported(start_service: Start) -> None:
    policy = RetryPolicy(initial_interval_s=0.1, backoff_coefficient=2.0, maximum_attempts=3)
    broken = WorkflowSpec(argv=("/nonexistent/adw-binary", "{adw_id}"), retry=policy)
    server = start_service(workflows={"adw_broken": broken})
    client = server.client()
    client.trigger("adw_broken", adw_id="spawn001")
    offered = client.wait_for(lambda m: _kind(m, "recovery_instructions", "spawn001"))
    reports = [m["data"] for m in client.seen if _kind(m, "error_report", "spawn001")]
    assert [r["attempt"] for r in reports] == [1, 2, 3]
    assert [r["retry_in_s"] for r in reports] == [0.1, 0.2, None]
    assert {r["error_class"] for r in reports} == {"system.spawn"}
    assert offered["data"]["error_id"] == reports[-1]["error_id"]
    queued = [e.event for e in server.events() if isinstance(e.event, RunQueued)]
    assert [q.attempt for q in queued] == [1, 2, 3]
    assert [q.retry_of for q in queued[1:]] == [r["error_id"] for r in reports[:2]]
    assert all(q.recovery == "auto_retry" for q in queued[1:])
    # The backoff held each attempt back: its queueing is at least the delay after the failure.
    starts = [e.ts for e in server.events() if isinstance(e.event, RunQueued)]
    assert starts[2] - starts[1] >= 0.1


def test_a_failed_run_reports_and_completes_when_the_user_retries(server: Running) -> None:
    client = server.client()
    client.trigger("adw_plan_iso", adw_id="retry001", trigger_reason="#fail")
    assert client.wait_terminal("retry001")["data"]["status"] == "failed"
    report = client.wait_for(lambda m: _kind(m, "error_report", "retry001"))["data"]
    assert report["error_class"] == "workflow.exit_nonzero"
    assert (report["category"], report["severity"]) == ("workflow", "medium")
    assert report["retry_in_s"] is None
    assert report["recovery_options"] == ["retry", "retry_heavy", "cancel"]
    assert report["workflow_name"] == "adw_plan_iso"
    advice = client.wait_for(lambda m: _kind(m, "recovery_instructions", "retry001"))["data"]
    assert advice["error_id"] == report["error_id"]
    assert advice["based_on"] == 0
    assert advice["success_probability"] == 0.3  # the prior of a non-transient class
    assert advice["estimated_time"] == 0.0  # no completed plan yet: unknown
    assert any('"option":"retry"' in step for step in advice["steps"])

    recover = {"error_id": report["error_id"], "option": "retry"}
    client.send({"type": "recover", "request_id": "rec-1", "data": recover})
    answer = client.wait_for(lambda m: m["type"] == "trigger_response")
    assert answer["request_id"] == "rec-1"
    assert answer["data"]["status"] == "accepted"
    assert client.wait_terminal("retry001")["data"]["status"] == "completed"
    # The same request again is answered, not run again.
    client.send({"type": "recover", "request_id": "rec-1", "data": recover})
    again = client.wait_for(lambda m: m["type"] == "trigger_response")
    assert again["data"]["outcome"] == "deduplicated"
    queued = [e.event for e in server.events() if isinstance(e.event, RunQueued)]
    assert len(queued) == 2
    assert (queued[1].retry_of, queued[1].attempt, queued[1].recovery) == (
        report["error_id"],
        2,
        "retry",
    )


def test_recovery_figures_follow_the_history_in_the_log(server: Running) -> None:
    client = server.client()
    figures = []
    for n in range(3):
        adw_id = f"hist{n:04d}"
        client.trigger("adw_plan_iso", adw_id=adw_id, trigger_reason="#fail")
        assert client.wait_terminal(adw_id)["data"]["status"] == "failed"
        report = client.wait_for(lambda m, a=adw_id: _kind(m, "error_report", a))["data"]
        advice = client.wait_for(lambda m, a=adw_id: _kind(m, "recovery_instructions", a))
        figures.append((advice["data"]["success_probability"], advice["data"]["based_on"]))
        client.send(
            {"type": "recover", "data": {"error_id": report["error_id"], "option": "retry"}}
        )
        assert client.wait_terminal(adw_id)["data"]["status"] == "completed"
    # Each completed retry of exit_nonzero raises the odds of the next: (0.6 + s) / (2 + n).
    assert figures == [(0.3, 0), (round(1.6 / 3, 4), 1), (round(2.6 / 4, 4), 2)]
    stored = [e.event for e in server.events() if isinstance(e.event, RecoveryOffered)]
    assert [(o.success_probability, o.based_on) for o in stored] == figures


def test_resume_from_stage_runs_the_rest_of_a_composite(server: Running) -> None:
    client = server.client()
    client.trigger("adw_sdlc_iso", adw_id="resume01", trigger_reason="#fail-at:test")
    assert client.wait_terminal("resume01")["data"]["status"] == "failed"
    report = client.wait_for(lambda m: _kind(m, "error_report", "resume01"))["data"]
    assert "resume_from_stage" in report["recovery_options"]
    client.wait_for(lambda m: _kind(m, "recovery_instructions", "resume01"))
    client.send({"type": "recover", "data": {"adw_id": "resume01", "option": "resume_from_stage"}})
    answer = client.wait_for(lambda m: m["type"] == "trigger_response")["data"]
    assert (answer["status"], answer["workflow_name"]) == ("accepted", "adw_orchestrator")
    final = client.wait_terminal("resume01")
    assert (final["data"]["workflow_name"], final["data"]["status"]) == (
        "adw_orchestrator",
        "completed",
    )
    log = (server.data_dir / "agents/resume01/adw_orchestrator/execution.log").read_text()
    assert "--stages test,review,document" in log.splitlines()[0]


def test_recover_names_what_is_wrong(server: Running) -> None:
    client = server.client()
    client.send({"type": "recover", "data": {"error_id": "nope", "option": "retry"}})
    unknown = client.wait_for(lambda m: m["type"] == "trigger_response")["data"]
    assert (unknown["status"], unknown["error"]) == ("rejected", "not_found")
    client.send({"type": "recover", "data": {"option": "retry"}})
    neither = client.wait_for(lambda m: m["type"] == "trigger_response")["data"]
    assert neither["error"] == "validation_error"
    client.send({"type": "recover", "data": {"error_id": "x", "option": "explode"}})
    bad = client.wait_for(lambda m: m["type"] == "error")["data"]
    assert bad["code"] == "validation_error"


# -- timeouts, terminate --------------------------------------------------------


def test_a_hung_workflow_is_caught_by_its_heartbeat(start_service: Start) -> None:
    hung = WorkflowSpec(argv=("{python}", "adws/adw_sleep.py"), heartbeat_s=0.5, retry=NO_RETRY)
    server = start_service(workflows={"adw_sleep": hung})
    client = server.client()
    client.trigger("adw_sleep", adw_id="hung0001")
    final = client.wait_terminal("hung0001")
    assert final["data"]["status"] == "failed"
    assert final["data"]["message"].startswith("hung: no output and no progress for")
    report = client.wait_for(lambda m: _kind(m, "error_report", "hung0001"))["data"]
    assert report["error_class"] == "workflow.heartbeat_lost"


def test_schedule_to_close_ends_a_run_that_waited_too_long(
    start_service: Start, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    blocker = WorkflowSpec(env={"ADW_RELEASE_FILE": str(release)})
    late = WorkflowSpec(argv=("{python}", "adws/adw_plan_iso.py"), schedule_to_close_s=0.3)
    server = start_service(max_concurrent=1, workflows={"adw_sleep": blocker, "adw_late": late})
    client = server.client()
    client.trigger("adw_sleep", adw_id="block001")
    client.wait_for(lambda m: _kind(m, "status_update", "block001"))
    client.trigger("adw_late", adw_id="late0001")
    time.sleep(0.4)  # the deadline itself is what is tested: it must pass while queued
    release.touch()
    final = client.wait_terminal("late0001")
    assert final["data"]["status"] == "failed"
    assert "schedule_to_close_s" in final["data"]["message"]
    report = client.wait_for(lambda m: _kind(m, "error_report", "late0001"))["data"]
    assert report["error_class"] == "workflow.timeout"


def test_terminate_kills_a_group_that_ignores_sigterm_at_once(
    start_service: Start, tmp_path: Path
) -> None:
    helper = tmp_path / "helper.pid"
    stubborn = WorkflowSpec(env={"ADW_STUBBORN_CHILD": str(helper)})
    server = start_service(shutdown_grace_s=30.0, workflows={"adw_sleep": stubborn})
    client = server.client()
    client.trigger("adw_sleep", adw_id="term0001")
    started = client.wait_for(
        lambda m: _kind(m, "status_update", "term0001") and m["data"]["status"] == "started"
    )
    leader = int(re.search(r"pid (\d+)", started["data"]["message"]).group(1))  # type: ignore[union-attr]
    client.wait_for(
        lambda m: _kind(m, "status_update", "term0001") and m["data"]["status"] == "running"
    )
    asked = time.monotonic()
    client.send({"type": "terminate_workflow", "data": {"adw_id": "term0001", "reason": "stuck"}})
    reply = client.wait_for(lambda m: m["type"] == "cancel_response")["data"]
    assert "terminating" in reply["message"]
    final = client.wait_terminal("term0001")
    took = time.monotonic() - asked
    assert final["data"]["cancelled"] is True
    assert final["data"]["message"] == "terminated: stuck"
    assert took < 15.0  # far below the 30 s grace a cancel would wait
    assert group_members(leader) == []
    body = _adw_at(server, "term0001", final["seq"])
    assert body["runs"][-1]["status"] == "cancelled"
    reports = [e for e in server.events() if isinstance(e.event, ErrorReported)]
    assert reports == []  # nothing failed


# -- drag-and-drop ----------------------------------------------------------------


def test_moving_a_card_twice_starts_one_run(server: Running) -> None:
    client = server.client()
    move = {"card_id": "card-9", "to_stage": "plan", "adw_id": "drag0001"}
    client.send({"type": "card_moved", "data": move})
    first = client.wait_for(lambda m: m["type"] == "trigger_response")["data"]
    assert (first["status"], first["workflow_name"]) == ("accepted", "adw_plan_iso")
    client.send({"type": "card_moved", "data": move})
    second = client.wait_for(lambda m: m["type"] == "trigger_response")["data"]
    assert second["outcome"] == "deduplicated"
    assert client.wait_terminal("drag0001")["data"]["status"] == "completed"
    client.send({"type": "card_moved", "data": {**move, "to_stage": "backlog"}})
    nothing = client.wait_for(lambda m: m["type"] == "trigger_response")["data"]
    assert (nothing["status"], nothing["error"]) == ("rejected", "not_found")
    queued = [e.event for e in server.events() if isinstance(e.event, RunQueued)]
    assert len(queued) == 1


def test_a_plan_completed_before_a_restart_still_counts(start_service: Start) -> None:
    first = start_service()
    adw_id = first.client().planned("before01")
    first.service.stop()
    again = start_service()
    client = again.client()
    assert client.trigger("adw_build_iso", adw_id=adw_id)["data"]["status"] == "accepted"
    assert client.wait_terminal(adw_id)["data"]["status"] == "completed"
    # ...and so does a failure, for a recover after the restart.
    client.trigger("adw_test_iso", adw_id=adw_id, trigger_reason="#fail")
    report = client.wait_for(lambda m: _kind(m, "error_report", adw_id))["data"]
    again.service.stop()
    third = start_service()
    client = third.client()
    client.send({"type": "recover", "data": {"error_id": report["error_id"], "option": "retry"}})
    answer = client.wait_for(lambda m: m["type"] == "trigger_response")["data"]
    assert (answer["status"], answer["workflow_name"]) == ("accepted", "adw_test_iso")
    assert client.wait_terminal(adw_id)["data"]["status"] == "completed"


def test_an_adw_id_older_than_those_loaded_at_start_is_read_on_demand(
    start_service: Start, monkeypatch: Any
) -> None:
    from adwd.projections import views

    first = start_service()
    client = first.client()
    old = client.planned("old00001")
    client.planned("new00001")
    first.service.stop()
    monkeypatch.setattr(views, "KEEP_LINEAGE", 1)  # a start loads only the newest adw_id
    again = start_service()
    client = again.client()
    assert client.trigger("adw_build_iso", adw_id=old)["data"]["status"] == "accepted"
    assert client.wait_terminal(old)["data"]["status"] == "completed"
    unknown = client.trigger("adw_build_iso", adw_id="never001")["data"]
    assert (unknown["status"], unknown["error"]) == ("rejected", "conflict")
