"""Start-up recovery: what to do with runs a previous service left behind.

Pure decisions plus the one side effect that must happen before anything
else starts: stopping children that outlived the service that started them.
"""

from __future__ import annotations

import uuid

from adwd.actors.classify import INTERRUPTED as INTERRUPTED_CLASS
from adwd.actors.processes import group_members, is_same_process, start_ticks, stop_groups
from adwd.events.domain import ErrorReported, OrphanStopped, RunFailed, workflow_stream
from adwd.events.store import NewEvent
from adwd.projections.runs import RunView

INTERRUPTED = (
    "interrupted: the service stopped while the run was in progress; trigger it again to re-run it"
)


def recover_in_flight(views: list[RunView], grace_s: float) -> list[NewEvent]:
    """Stop leftover children of in-flight runs; record each run as failed, with a report."""
    events: list[NewEvent] = []
    ours = [view.pid for view in views if _is_ours(view.pid, view.proc_start)]
    sent_to = stop_groups(ours, grace_s)  # all at once: one grace period at most
    for view in views:
        adw_id, workflow_type = view.key
        stream = workflow_stream(adw_id)
        if view.pid in sent_to:
            sent = sent_to[view.pid]
            events.append(
                NewEvent(stream, OrphanStopped(adw_id=adw_id, workflow_type=workflow_type,
                                               pid=view.pid, signal=sent))
            )  # fmt: skip
        events.append(
            NewEvent(
                stream,
                RunFailed(
                    adw_id=adw_id,
                    workflow_type=workflow_type,
                    reason=INTERRUPTED,
                    progress_percent=view.progress_percent,
                    expected_s=view.expected_s,
                ),
            )
        )
        events.append(NewEvent(stream, interrupted_report(view)))
    return events


def _is_ours(pgid: int, leader_ticks: int) -> bool:
    """Whether group ``pgid`` is still the group a run's leader started.

    The group, not its leader: the leader usually dies with the service (a
    broken pipe) while what it started lives on in the group, and the group's
    id cannot be taken by another group while any member of ours lives. A group
    whose members all started after the recorded leader passes; a start time
    that was never recorded, or a member older than the leader (the pid was
    reused, e.g. after a reboot), does not: never signal what is not ours.
    """
    if pgid <= 0 or leader_ticks == 0:
        return False
    if is_same_process(pgid, leader_ticks):
        return True
    members = group_members(pgid)
    return bool(members) and all(start_ticks(m) >= leader_ticks for m in members)


def interrupted_report(view: RunView) -> ErrorReported:
    """The error report of a run cut short by the service stopping."""
    adw_id, workflow_type = view.key
    return ErrorReported(
        error_id=uuid.uuid4().hex[:12],
        category=INTERRUPTED_CLASS.category,
        severity=INTERRUPTED_CLASS.severity,
        error_class=INTERRUPTED_CLASS.id,
        description=(
            f"{workflow_type} for {adw_id} was running when the service stopped "
            f"(at {view.progress_percent}%, step {view.current_step or 'unknown'!r}); "
            "its process was stopped and the run marked failed."
        ),
        suggested_actions=[
            f"Read the run's log: {view.request.logs_path}",
            "Check the work directory for partial output before re-running.",
            "Trigger the workflow again with the same adw_id to re-run it.",
        ],
        recovery_options=["retry", "retry_heavy", "cancel"],
        stage=view.stage or "",
        adw_id=adw_id,
        workflow_type=workflow_type,
    )
