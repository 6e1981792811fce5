"""Every failure of a run gets a class: a stable id, a category and a
severity, by the pure rules below (docs/workflows.md, "Error classes").

The class decides what an ``error_report`` says and, later, which failures
are retried on their own (the transient ones).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Literal

from adwd.events.domain import ErrorReported

Category = Literal["connection", "workflow", "system"]
Severity = Literal["low", "medium", "high", "critical"]
Cause = Literal["exit", "timeout", "heartbeat", "output", "spawn", "interrupted", "internal"]


@dataclass(frozen=True)
class ErrorClass:
    """One kind of failure and what a person can do about it."""

    id: str
    category: Category
    severity: Severity
    transient: bool  # worth retrying as it is (nothing in the workflow to fix)
    summary: str
    action: str


EXIT_NONZERO = ErrorClass(
    "workflow.exit_nonzero", "workflow", "medium", False,
    "the workflow exited with an error", "Fix what its last lines name, then trigger it again.",
)  # fmt: skip
KILLED = ErrorClass(
    "system.killed", "system", "high", True,
    "the workflow was killed by a signal nobody in adwd sent (out of memory, an operator)",
    "Check the machine's memory and logs, then trigger it again.",
)  # fmt: skip
TIMEOUT = ErrorClass(
    "workflow.timeout", "workflow", "high", False,
    "the workflow ran past its timeout and was stopped",
    "Look for where it hung in its log; raise timeout_s in the config if it was only slow.",
)  # fmt: skip
HEARTBEAT_LOST = ErrorClass(
    "workflow.heartbeat_lost", "workflow", "high", True,
    "the workflow wrote no output and reported no progress for its heartbeat_s and was stopped",
    "Look at the end of its log for where it hung; raise heartbeat_s if it is only quiet.",
)  # fmt: skip
DISK_FULL = ErrorClass(
    "system.disk_full", "system", "critical", False,
    "the run's output could not be written (the disk under the data directory)",
    "Free space in the data directory, then trigger it again.",
)  # fmt: skip
SPAWN = ErrorClass(
    "system.spawn", "system", "high", True,
    "the workflow could not be started",
    "Check the workflow's argv, cwd and script in the config, then trigger it again.",
)  # fmt: skip
INTERRUPTED = ErrorClass(
    "system.interrupted", "system", "high", True,
    "the service stopped while the run was in progress",
    "Check the work directory for partial output, then trigger it again.",
)  # fmt: skip
INTERNAL = ErrorClass(
    "system.internal", "system", "critical", True,
    "adwd failed while supervising the run (not the workflow)",
    "Report the traceback in adwd's log; trigger the run again.",
)  # fmt: skip

CLASSES = (EXIT_NONZERO, KILLED, TIMEOUT, HEARTBEAT_LOST, DISK_FULL, SPAWN, INTERRUPTED, INTERNAL)
BY_ID = {error.id: error for error in CLASSES}


def classify(cause: Cause, exit_code: int | None = None) -> ErrorClass:
    """The class of a failure: what ended the run, and how its process exited."""
    if cause == "timeout":
        return TIMEOUT
    if cause == "heartbeat":
        return HEARTBEAT_LOST
    if cause == "output":
        return DISK_FULL
    if cause == "spawn":
        return SPAWN
    if cause == "interrupted":
        return INTERRUPTED
    if cause == "internal":
        return INTERNAL
    if exit_code is not None and exit_code < 0 and -exit_code != signal.SIGTERM:
        return KILLED
    return EXIT_NONZERO


def report(
    error: ErrorClass,
    *,
    error_id: str,
    adw_id: str,
    workflow_type: str,
    reason: str,
    logs_path: str,
    attempt: int = 1,
    retry_in_s: float | None = None,
    stage: str = "",
    resumable: bool = False,
) -> ErrorReported:
    """The ``error_reported`` event of a failed run of this class."""
    actions = [f"Read the run's log: {logs_path}", error.action]
    if retry_in_s is not None:
        actions.insert(0, f"Nothing to do yet: attempt {attempt + 1} starts in {retry_in_s:g} s.")
    return ErrorReported(
        error_id=error_id,
        category=error.category,
        severity=error.severity,
        description=f"{workflow_type} for {adw_id} failed: {error.summary} ({reason}).",
        suggested_actions=actions,
        recovery_options=[o for o in RECOVERY_OPTIONS if resumable or o != "resume_from_stage"],
        adw_id=adw_id,
        workflow_type=workflow_type,
        error_class=error.id,
        attempt=attempt,
        retry_in_s=retry_in_s,
        stage=stage,
    )


# What a client may ask for in ``recover`` (docs/workflows.md, "Recovery").
RECOVERY_OPTIONS = ("retry", "retry_heavy", "resume_from_stage", "cancel")
