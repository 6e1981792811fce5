"""The rules that give every failure its class (docs/workflows.md, Error classes)."""

from __future__ import annotations

import signal

import pytest

from adwd.actors.classify import CLASSES, classify, report


@pytest.mark.parametrize(
    ("cause", "exit_code", "expected"),
    [
        ("exit", 1, "workflow.exit_nonzero"),
        ("exit", 2, "workflow.exit_nonzero"),
        ("exit", -signal.SIGKILL, "system.killed"),
        ("exit", -signal.SIGSEGV, "system.killed"),
        ("exit", -signal.SIGTERM, "workflow.exit_nonzero"),  # adwd's own stop, or the workflow's
        ("timeout", -signal.SIGTERM, "workflow.timeout"),
        ("timeout", -signal.SIGKILL, "workflow.timeout"),
        ("output", 1, "system.disk_full"),
        ("spawn", None, "system.spawn"),
        ("interrupted", None, "system.interrupted"),
        ("internal", None, "system.internal"),
    ],
)
def test_each_cause_gets_its_class(cause: str, exit_code: int | None, expected: str) -> None:
    assert classify(cause, exit_code).id == expected  # type: ignore[arg-type]


def test_class_ids_are_unique_and_namespaced_by_category() -> None:
    ids = [c.id for c in CLASSES]
    assert len(ids) == len(set(ids))
    for error in CLASSES:
        assert error.id.split(".")[0] == error.category


def test_a_report_says_what_where_and_what_to_do() -> None:
    event = report(
        classify("timeout"),
        error_id="e1",
        adw_id="a1",
        workflow_type="adw_test_iso",
        reason="timed out after 30 s",
        logs_path="/d/agents/a1/adw_test_iso/execution.log",
    )
    assert (event.category, event.severity, event.error_class) == (
        "workflow",
        "high",
        "workflow.timeout",
    )
    assert "timed out after 30 s" in event.description
    assert event.suggested_actions[0].endswith("/d/agents/a1/adw_test_iso/execution.log")
    assert "timeout_s" in event.suggested_actions[1]
    assert event.recovery_options == ["retry", "retry_heavy", "cancel"]
