"""The scheduler's decisions, as pure functions over its state.

No threads, no I/O: given the state and a command, return the events that
record the decision. The SchedulerActor applies them and does the I/O.
A run is identified by ``(adw_id, workflow_type)``: ADW runs the stages of
one piece of work (plan, build, ...) under one adw_id.
"""

from __future__ import annotations

import hmac
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec

from adwd.actors.catalogue import WorkflowSpec, logs_path
from adwd.events.domain import RunQueued, TriggerDeduplicated, TriggerRejected
from adwd.events.errors import ErrorCode
from adwd.events.wire import CardMovedData, RecoverData, TriggerWorkflowData
from adwd.projections.lineage import Failure, LineageProjection

RunKey = tuple[str, str]


@dataclass
class SchedulerState:
    """What the scheduler knows: active runs, the FIFO queue, what runs now."""

    active: dict[RunKey, RunQueued] = field(default_factory=dict)
    queue: deque[RunKey] = field(default_factory=deque)
    running: set[RunKey] = field(default_factory=set)

    def enqueue(self, run: RunQueued) -> None:
        """Record an accepted run as waiting."""
        key = (run.adw_id, run.workflow_type)
        self.active[key] = run
        self.queue.append(key)

    def start(self, key: RunKey) -> None:
        """Move a waiting run to running."""
        self.queue.remove(key)
        self.running.add(key)

    def finish(self, key: RunKey) -> None:
        """Forget a run that reached its terminal status."""
        self.running.discard(key)
        if key in self.queue:
            self.queue.remove(key)
        self.active.pop(key, None)


def missing_dependency(
    spec: WorkflowSpec, workflow_type: str, adw_id: str | None, lineage: LineageProjection
) -> tuple[str, dict[str, Any]] | None:
    """Why a workflow cannot run on this adw_id yet (a message and details), or None.

    Checked against the log: the adw_id must be known, and a completed run of
    it must have covered every stage the workflow ``requires``.
    """
    if not spec.requires:
        return None
    needs = ", ".join(spec.requires)
    if adw_id is None:
        return (
            f"{workflow_type} works on what an earlier run made: give the adw_id of a run "
            f"that completed {needs} (e.g. from adw_plan_iso's trigger_response).",
            {"field": "data.adw_id", "requires": list(spec.requires)},
        )
    if adw_id not in lineage.known:
        return (
            f"No run has adw_id {adw_id!r}: {workflow_type} needs the adw_id of a run that "
            f"completed {needs}. Check the adw_id, or run adw_plan_iso first.",
            {"field": "data.adw_id", "adw_id": adw_id, "requires": list(spec.requires)},
        )
    missing = [s for s in spec.requires if not lineage.has_completed(adw_id, s)]
    if missing:
        return (
            f"{workflow_type} needs a completed {', '.join(missing)} stage for adw_id "
            f"{adw_id!r}, and no run of it has completed that yet. Run (or retry) "
            f"the {missing[0]} stage first.",
            {"adw_id": adw_id, "requires": list(spec.requires), "missing": missing},
        )
    return None


def decide_trigger(
    state: SchedulerState,
    trigger: TriggerWorkflowData,
    *,
    catalogue: Mapping[str, WorkflowSpec],
    data_dir: Path,
    max_queue: int,
    connection_id: str | None,
    new_adw_id: str,
    request_id: str | None = None,
    lineage: LineageProjection | None = None,
    now: float = 0.0,
) -> RunQueued | TriggerDeduplicated | TriggerRejected:
    """Admit, deduplicate or reject one trigger."""
    adw_id = trigger.adw_id or new_adw_id
    workflow_type = trigger.workflow_type
    if workflow_type not in catalogue:
        allowed = sorted(catalogue)
        return TriggerRejected(
            error=ErrorCode.VALIDATION_ERROR,
            message=(f"Unknown workflow_type {workflow_type!r}. Use one of: {', '.join(allowed)}."),
            adw_id=adw_id,
            workflow_type=workflow_type,
            details={"field": "data.workflow_type", "allowed": allowed},
            connection_id=connection_id,
            request_id=request_id,
        )
    key = (adw_id, workflow_type)
    existing = state.active.get(key)
    if existing is not None:
        # Clients re-send queued triggers after a reconnect: answer as before.
        return TriggerDeduplicated(
            adw_id=adw_id,
            workflow_type=workflow_type,
            logs_path=existing.logs_path,
            connection_id=connection_id,
            request_id=request_id,
        )
    spec = catalogue[workflow_type]
    missing = missing_dependency(
        spec, workflow_type, trigger.adw_id, lineage or LineageProjection()
    )
    if missing is not None:
        return TriggerRejected(
            error=ErrorCode.CONFLICT,
            message=missing[0],
            adw_id=trigger.adw_id or "",
            workflow_type=workflow_type,
            details=missing[1],
            connection_id=connection_id,
            request_id=request_id,
        )
    if len(state.queue) >= max_queue:
        return TriggerRejected(
            error=ErrorCode.UNAVAILABLE,
            message=(
                f"The queue is full ({max_queue} runs waiting). Try again when runs "
                "have finished, or raise max_queue."
            ),
            adw_id=adw_id,
            workflow_type=workflow_type,
            details={"queue_length": len(state.queue), "max_queue": max_queue},
            connection_id=connection_id,
            request_id=request_id,
        )
    return RunQueued(
        adw_id=adw_id,
        workflow_type=workflow_type,
        logs_path=str(logs_path(data_dir, adw_id, workflow_type)),
        issue_number=str(trigger.issue_number or ""),
        model_set=trigger.model_set,
        trigger_reason=trigger.trigger_reason or "",
        issue_type=trigger.issue_type,
        issue_json=trigger.issue_json,
        stages=trigger.stages,
        config=trigger.config,
        connection_id=connection_id,
        request_id=request_id,
        first_queued=now,
        covers=list(trigger.stages if spec.pass_stages and trigger.stages else spec.stages),
    )


def repeat_answer(
    earlier: RunQueued | TriggerDeduplicated | TriggerRejected,
    *,
    connection_id: str | None,
    request_id: str,
) -> TriggerDeduplicated | TriggerRejected:
    """The answer to a trigger re-sent with a ``request_id`` already decided: the
    same outcome again, addressed to the connection that asked this time."""
    if isinstance(earlier, TriggerRejected):
        return msgspec.structs.replace(earlier, connection_id=connection_id, request_id=request_id)
    return TriggerDeduplicated(
        adw_id=earlier.adw_id,
        workflow_type=earlier.workflow_type,
        logs_path=earlier.logs_path,
        connection_id=connection_id,
        request_id=request_id,
    )


def runs_to_start(
    state: SchedulerState,
    *,
    catalogue: Mapping[str, WorkflowSpec],
    max_concurrent: int,
    now: float = float("inf"),
) -> list[RunKey]:
    """The waiting runs to start now, in FIFO order.

    At most ``max_concurrent`` run at once, and at most a type's own limit of
    that type. Two runs of one adw_id never run together (they share a work
    directory); a run held back for that keeps its place for later.
    """
    chosen: list[RunKey] = []
    running = set(state.running)
    for key in state.queue:
        if len(running) >= max_concurrent:
            break
        adw_id, workflow_type = key
        if any(r[0] == adw_id for r in running):
            continue
        due = state.active[key].not_before
        if due is not None and due > now:  # a retry waiting out its backoff
            continue
        limit = catalogue[workflow_type].max_concurrent if workflow_type in catalogue else 0
        if limit and sum(1 for r in running if r[1] == workflow_type) >= limit:
            continue
        chosen.append(key)
        running.add(key)
    return chosen


@dataclass(frozen=True)
class CancelDecision:
    """What a cancel of an adw_id does: stop its running runs (signal them),
    end its waiting runs at once, or find nothing."""

    outcome: Literal["cancelling", "not_found"]
    running: tuple[RunKey, ...]
    waiting: tuple[RunKey, ...]


def decide_cancel(state: SchedulerState, adw_id: str) -> CancelDecision:
    """Cancel every active run of ``adw_id``: running ones are signalled,
    queued ones end before they start."""
    keys = [key for key in state.active if key[0] == adw_id]
    running = tuple(k for k in keys if k in state.running)
    waiting = tuple(k for k in keys if k not in state.running)
    return CancelDecision("cancelling" if keys else "not_found", running, waiting)


Decision = RunQueued | TriggerDeduplicated | TriggerRejected


class RequestMemory:
    """Decisions by request_id, so a re-sent command is answered, not re-run.

    Bounded to the most recent ``size``: a client re-sends within a
    reconnect, not days later. Rebuilt at start from the runs projection.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._decisions: OrderedDict[str, Decision] = OrderedDict()

    def earlier(self, request_id: str | None) -> Decision | None:
        """The decision already taken for this request_id, if any."""
        return self._decisions.get(request_id) if request_id is not None else None

    def remember(self, request_id: str | None, decision: Decision) -> None:
        """Keep the decision of a request (no-op without a request_id)."""
        if request_id is None:
            return
        self._decisions[request_id] = decision
        self._decisions.move_to_end(request_id)  # the newest is kept longest
        while len(self._decisions) > self._size:
            self._decisions.popitem(last=False)

    def __len__(self) -> int:
        return len(self._decisions)


def authorise_update(
    running: Iterable[RunKey],
    tokens: Mapping[RunKey, str],
    adw_id: str,
    token: str | None,
    *,
    local: bool,
) -> tuple[str, RunKey | None]:
    """Whom a workflow's HTTP report goes to: ``("accepted", key)``,
    ``("forbidden", None)`` (a wrong run token from a non-local client) or
    ``("not_found", None)`` (no running run of that adw_id).

    The token is compared in constant time: a timing difference must not
    tell a guesser how much of it was right.
    """
    for key in running:
        if key[0] != adw_id:
            continue
        expected = tokens.get(key)
        if local or (
            token is not None
            and expected is not None
            and hmac.compare_digest(token.encode(), expected.encode())
        ):
            return "accepted", key
        return "forbidden", None
    return "not_found", None


def next_attempt(
    failed: RunQueued, *, error_id: str, error_class: str, retry_in_s: float, now: float
) -> RunQueued:
    """The automatic retry of a failed run: the same request, one attempt
    later, linked to the failure, waiting out its backoff."""
    return msgspec.structs.replace(
        failed,
        attempt=failed.attempt + 1,
        retry_of=error_id,
        recovers_class=error_class,
        recovery="auto_retry",
        not_before=now + retry_in_s,
        first_queued=failed.first_queued or now,
        connection_id=None,
        request_id=None,
    )


def decide_recover(
    data: RecoverData,
    *,
    lineage: LineageProjection,
    state: SchedulerState,
    catalogue: Mapping[str, WorkflowSpec],
    connection_id: str | None,
    request_id: str | None,
    now: float,
    resume_type: str = "adw_orchestrator",
) -> RunQueued | TriggerRejected | Failure:
    """A user's recovery of a failure: the new run (linked to the failure), a
    rejection saying why not, or, for ``cancel``, the failure to cancel."""
    failure = lineage.failure(error_id=data.error_id, adw_id=data.adw_id)

    def reject(code: ErrorCode, message: str, **details: Any) -> TriggerRejected:
        return TriggerRejected(
            error=code,
            message=message,
            adw_id=failure.adw_id if failure else data.adw_id or "",
            workflow_type=failure.workflow_type if failure else "",
            details=details,
            connection_id=connection_id,
            request_id=request_id,
        )

    if data.error_id is None and data.adw_id is None:
        return reject(
            ErrorCode.VALIDATION_ERROR,
            "recover needs data.error_id (from an error_report) or data.adw_id (its latest "
            "failure); give one.",
            field="data.error_id",
        )
    if failure is None or failure.request is None:
        named = f"error_id {data.error_id!r}" if data.error_id else f"adw_id {data.adw_id!r}"
        return reject(
            ErrorCode.NOT_FOUND,
            f"No failed run is known by {named}; use the error_id of an error_report "
            "(or the adw_id of a failed run).",
            field="data.error_id" if data.error_id else "data.adw_id",
        )
    if data.option == "cancel":
        return failure
    key = (failure.adw_id, failure.workflow_type)
    if key in state.active:
        return reject(
            ErrorCode.CONFLICT,
            f"{failure.workflow_type} for {failure.adw_id} is already queued or running again; "
            "wait for it, or cancel it first.",
            adw_id=failure.adw_id,
        )
    base = msgspec.structs.replace(
        failure.request,
        attempt=failure.attempt + 1,
        retry_of=failure.error_id,
        recovers_class=failure.error_class,
        recovery=data.option,
        not_before=None,
        first_queued=now,
        connection_id=connection_id,
        request_id=request_id,
        trigger_reason=data.reason or f"recover {data.option} of {failure.error_id}",
    )
    if data.option == "retry":
        return base
    if data.option == "retry_heavy":
        return msgspec.structs.replace(base, model_set="heavy")
    # resume_from_stage: the orchestrator runs the stages from the one that failed.
    stages = list(failure.request.covers or ())
    if len(stages) < 2 or failure.stage not in stages or resume_type not in catalogue:
        return reject(
            ErrorCode.VALIDATION_ERROR,
            f"{failure.workflow_type} cannot resume from a stage (it has one stage, or "
            f"failed before reaching one, or {resume_type} is not configured); use "
            "option retry.",
            field="data.option",
        )
    remaining = stages[stages.index(failure.stage) :]
    resume_key = (failure.adw_id, resume_type)
    if resume_key in state.active:
        return reject(ErrorCode.CONFLICT, f"{resume_type} for {failure.adw_id} is already active.")
    return msgspec.structs.replace(
        base,
        workflow_type=resume_type,
        logs_path=str(
            Path(failure.request.logs_path).parent.parent / resume_type / "execution.log"
        ),
        stages=remaining,
        config=None,
        covers=remaining,
    )


def card_move_trigger(
    data: CardMovedData,
    *,
    stage_triggers: Mapping[str, str],
    catalogue: Mapping[str, WorkflowSpec],
    connection_id: str | None,
    request_id: str | None,
) -> TriggerWorkflowData | TriggerRejected:
    """What a card moved on the board asks for: the trigger of the workflow
    configured for its new stage, or a rejection when none is."""
    workflow_type = stage_triggers.get(data.to_stage)
    if workflow_type is None or workflow_type not in catalogue:
        return TriggerRejected(
            error=ErrorCode.NOT_FOUND,
            message=f"No workflow is configured for stage {data.to_stage!r} "
            f"(stage_triggers has: {', '.join(sorted(stage_triggers)) or 'none'}); "
            "nothing started.",
            adw_id=data.adw_id or "",
            workflow_type="",
            details={"field": "data.to_stage", "stage_triggers": dict(stage_triggers)},
            connection_id=connection_id,
            request_id=request_id,
        )
    return TriggerWorkflowData(
        workflow_type=workflow_type,
        adw_id=data.adw_id,
        issue_number=data.issue_number,
        model_set=data.model_set,
        trigger_reason=f"card {data.card_id} moved to {data.to_stage}",
        issue_type=data.issue_type,
        issue_json=data.issue_json,
    )


def card_move_key(data: CardMovedData) -> str:
    """Moves of one card to one stage are one request: the second starts nothing."""
    return f"card:{data.card_id}:{data.to_stage}"


def attempt_timeout(spec: WorkflowSpec, run: RunQueued, now: float) -> float | None:
    """The limit of the attempt that starts now: its own start-to-close, cut to
    what is left of the run's schedule-to-close (queueing and retries
    included); None when that ran out before the attempt could start."""
    timeout_s = spec.attempt_timeout_s
    if spec.schedule_to_close_s <= 0:
        return timeout_s
    left = (run.first_queued or now) + spec.schedule_to_close_s - now
    if left <= 0:
        return None
    return min(timeout_s, left) if timeout_s > 0 else left
