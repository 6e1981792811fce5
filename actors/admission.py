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
from typing import Literal

import msgspec

from adwd.actors.catalogue import WorkflowSpec, logs_path
from adwd.events.domain import RunQueued, TriggerDeduplicated, TriggerRejected
from adwd.events.errors import ErrorCode
from adwd.events.wire import TriggerWorkflowData

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
    state: SchedulerState, *, catalogue: Mapping[str, WorkflowSpec], max_concurrent: int
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
