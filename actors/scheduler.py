"""SchedulerActor: admits triggers, keeps the FIFO queue, starts runs.

A thin adapter over :mod:`actors.admission`: receive, decide, apply the
decision to its own state, append it to the log, and start WorkflowActors
for the runs that fit under ``max_concurrent``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pykka

from adwd.actors.admission import (
    RequestMemory,
    RunKey,
    SchedulerState,
    attempt_timeout,
    authorise_update,
    card_move_key,
    card_move_trigger,
    decide_cancel,
    decide_recover,
    decide_trigger,
    next_attempt,
    repeat_answer,
    runs_to_start,
)
from adwd.actors.advice import offer
from adwd.actors.base import CRASH_AFTER_SPAWN, Actor
from adwd.actors.catalogue import RetryPolicy, WorkflowSpec, plan_launch
from adwd.actors.classify import SPAWN, TIMEOUT, report
from adwd.actors.messages import (
    Append,
    Cancel,
    CardMove,
    Committed,
    Listening,
    Recovery,
    Reject,
    RouteOutcome,
    RunEnded,
    Stop,
    Trigger,
)
from adwd.actors.workflow import WorkflowActor
from adwd.events.codec import encode
from adwd.events.domain import (
    CancelRequested,
    ErrorReported,
    RunFailed,
    RunQueued,
    TriggerDeduplicated,
    TriggerRejected,
    connection_stream,
    workflow_stream,
)
from adwd.events.errors import ErrorCode
from adwd.events.store import NewEvent
from adwd.events.wire import CancelWorkflowData, Error, ErrorData, TriggerWorkflowData
from adwd.projections.lineage import Failure, LineageProjection
from adwd.projections.metrics import RECENT, expected_duration

log = logging.getLogger(__name__)


REMEMBERED_REQUESTS = 10_000  # request_ids answered again if re-sent
RESUME_TYPE = "adw_orchestrator"  # what resume_from_stage runs: the remaining stages


def new_adw_id() -> str:
    """Eight lowercase hex characters, as ADW run ids are."""
    return secrets.token_hex(4)


class SchedulerActor(Actor):
    """Owns the queue and the running set; the only starter of runs."""

    KIND = "scheduler"

    def __init__(
        self,
        *,
        event_log: pykka.ActorRef[pykka.Actor],
        catalogue: Mapping[str, WorkflowSpec],
        data_dir: Path,
        project_dir: Path,
        python: str,
        max_concurrent: int,
        max_queue: int,
        grace_s: float,
        recovered: list[RunQueued] | None = None,
        history: Mapping[str, Sequence[float]] | None = None,
        known_requests: Sequence[RunQueued | TriggerDeduplicated | TriggerRejected] = (),
        card_stages: Mapping[str, str] | None = None,
        log_lines_per_s: float = 20.0,
        id_factory: Callable[[], str] = new_adw_id,
        fault_injection: bool = False,
        lineage: LineageProjection | None = None,
        retry: RetryPolicy | None = None,
        retry_classes: Mapping[str, RetryPolicy] | None = None,
        stage_triggers: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        lineage_of: Callable[[str], tuple[str, ...] | None] | None = None,
    ) -> None:
        super().__init__()
        self._faults = fault_injection
        self._log = event_log
        self._catalogue = dict(catalogue)
        self._data_dir = data_dir
        self._project_dir = project_dir
        self._python = python
        self._max_concurrent = max_concurrent
        self._max_queue = max_queue
        self._grace_s = grace_s
        self._new_id = id_factory
        self._state = SchedulerState()
        self._stages = dict(card_stages or {})  # adw_id -> the stage its card is in
        self._log_lines_per_s = log_lines_per_s
        self._server_env: dict[str, str] = {}
        self._tokens: dict[RunKey, str] = {}  # run-scoped tokens for the HTTP endpoints
        self._requests = RequestMemory(REMEMBERED_REQUESTS)
        for run in known_requests or ():
            self._requests.remember(run.request_id, run)
        self._workers: dict[RunKey, pykka.ActorRef[WorkflowActor]] = {}
        for run in recovered or ():
            self._state.enqueue(run)
        # Recent completed durations per type: what "typical" means for a new run.
        self._recent = {
            name: deque(list(values)[-RECENT:], maxlen=RECENT)
            for name, values in (history or {}).items()
        }
        # Folded from the committed log, as the service's own copy and a replay are.
        self._lineage = lineage if lineage is not None else LineageProjection()
        self._retry = retry if retry is not None else RetryPolicy()
        self._retry_classes = dict(retry_classes or {})
        self._stage_triggers = dict(stage_triggers or {})
        self._clock = clock
        self._wake: threading.Timer | None = None
        # An adw_id older than those loaded at start: its lineage from views.db.
        self._lineage_of = lineage_of

    def on_start(self) -> None:
        """Start the runs recovered from the log, if there is room."""
        self._start_runs()

    def inject_workflow_fault(self, adw_id: str) -> None:
        """Tests only: make the actor of ``adw_id``'s running run fail."""
        worker = next((w for k, w in self._workers.items() if k[0] == adw_id), None)
        if worker is not None:
            worker.proxy().inject_fault.defer()

    def on_receive(self, message: object) -> object:
        """Triggers, cancels and the end of runs."""
        if isinstance(message, Trigger):
            self._on_trigger(message)
        elif isinstance(message, Reject):
            stream = connection_stream(message.connection_id)
            self._log.tell(
                Append([NewEvent(stream, message.event, message.principal, message.connection_id)])
            )
        elif isinstance(message, Listening):
            host = f"[{message.host}]" if ":" in message.host else message.host
            # WEBSOCKET_URL is what the ADW scripts' notifier posts to
            # ({WEBSOCKET_URL}/api/workflow-updates): the HTTP base URL. ADW_DB_ONLY=false
            # makes their state loader read the adw_state.json adwd writes. A workflow's
            # own env in the config overrides these (issue 14, docs/workflows.md).
            self._server_env = {
                "WEBSOCKET_URL": f"http://{host}:{message.port}",
                "WEBSOCKET_PORT": str(message.port),
                "ADWD_URL": f"http://{host}:{message.port}",
                "ADWD_WS_URL": f"ws://{host}:{message.port}/ws/trigger",
                "ADW_DB_ONLY": "false",
            }
        elif isinstance(message, Cancel):
            self._on_cancel(message)
        elif isinstance(message, RunEnded):
            self._on_run_ended(message)
        elif isinstance(message, Committed):
            self._on_committed(message)
        elif isinstance(message, Recovery):
            self._on_recover(message)
        elif isinstance(message, CardMove):
            self._on_card_moved(message)
        elif isinstance(message, _Wake):
            self._wake = None
            self._start_runs()
        return None

    def _on_run_ended(self, message: RunEnded) -> None:
        key = (message.adw_id, message.workflow_type)
        if message.stage is not None:
            self._stages[message.adw_id] = message.stage
        if message.completed_in_s is not None:
            recent = self._recent.setdefault(message.workflow_type, deque(maxlen=RECENT))
            recent.append(message.completed_in_s)
        failed = self._state.active.get(key)
        self._state.finish(key)
        self._workers.pop(key, None)
        self._tokens.pop(key, None)
        if (
            message.retry_in_s is not None
            and failed is not None
            and message.error_id is not None
            and message.error_class is not None
        ):
            retry = next_attempt(
                failed,
                error_id=message.error_id,
                error_class=message.error_class,
                retry_in_s=message.retry_in_s,
                now=self._clock(),
            )
            self._append(workflow_stream(retry.adw_id), retry)
            self._state.enqueue(retry)
        self._start_runs()

    def _on_committed(self, message: Committed) -> None:
        """Fold what the log committed; a failure nothing retries gets its
        ``recovery_offered``, from the fold as of that failure."""
        for stored in message.events:
            self._lineage.apply(stored)
            e = stored.event
            if not isinstance(e, ErrorReported) or e.retry_in_s is not None:
                continue
            failure = self._lineage.failures.get(e.error_id)
            if failure is None or failure.request is None:
                continue
            stages = failure.request.covers or ()
            offered = offer(
                self._lineage,
                failure,
                resumable=len(stages) > 1 and RESUME_TYPE in self._catalogue,
                resume_type=RESUME_TYPE,
            )
            self._append(workflow_stream(failure.adw_id), offered, stored.principal)

    def _on_recover(self, message: Recovery) -> None:
        rid = message.request_id
        if self._answered_before(rid, message):
            return
        decision = decide_recover(
            message.data,
            lineage=self._lineage,
            state=self._state,
            catalogue=self._catalogue,
            connection_id=message.connection_id,
            request_id=rid,
            now=self._clock(),
            resume_type=RESUME_TYPE,
        )
        if isinstance(decision, Failure):  # option cancel
            reason = message.data.reason or f"recover cancel of {decision.error_id}"
            data = CancelWorkflowData(adw_id=decision.adw_id, reason=reason)
            self._on_cancel(
                Cancel(data, message.connection_id, message.principal, message.reply, rid)
            )
            return
        self._requests.remember(rid, decision)
        self._admit(decision, message.connection_id, message.principal)

    def _on_card_moved(self, message: CardMove) -> None:
        """A drag-and-drop trigger: the workflow of the card's new stage, once
        per card and stage (a second move to the same stage starts nothing)."""
        once = card_move_key(message.data)
        if self._answered_before(once, message):
            return
        trigger = card_move_trigger(
            message.data,
            stage_triggers=self._stage_triggers,
            catalogue=self._catalogue,
            connection_id=message.connection_id,
            request_id=message.request_id,
        )
        if isinstance(trigger, TriggerRejected):
            self._admit(trigger, message.connection_id, message.principal)
            return
        decision = self._decide(trigger, message.connection_id, message.request_id)
        if not isinstance(decision, TriggerRejected):
            self._requests.remember(once, decision)  # a refused move may be made again
        self._requests.remember(message.request_id, decision)
        self._admit(decision, message.connection_id, message.principal)

    def _decide(
        self, trigger: TriggerWorkflowData, connection_id: str | None, request_id: str | None
    ) -> RunQueued | TriggerDeduplicated | TriggerRejected:
        adw_id = trigger.adw_id
        if adw_id and adw_id not in self._lineage.known and self._lineage_of is not None:
            completed = self._lineage_of(adw_id)
            if completed is not None:
                self._lineage.known.add(adw_id)
                if completed:
                    self._lineage.completed.setdefault(adw_id, set()).update(completed)
        return decide_trigger(
            self._state,
            trigger,
            catalogue=self._catalogue,
            data_dir=self._data_dir,
            max_queue=self._max_queue,
            connection_id=connection_id,
            new_adw_id=self._new_id(),
            request_id=request_id,
            lineage=self._lineage,
            now=self._clock(),
        )

    def _admit(
        self,
        decision: RunQueued | TriggerDeduplicated | TriggerRejected,
        connection_id: str,
        principal: str,
    ) -> None:
        """Record a trigger's outcome (its trigger_response comes from the event)
        and queue the run it accepted."""
        if isinstance(decision, RunQueued | TriggerDeduplicated):
            stream = workflow_stream(decision.adw_id)
        else:
            stream = connection_stream(connection_id)
        self._log.tell(Append([NewEvent(stream, decision, principal, connection_id)]))
        if isinstance(decision, RunQueued):
            self._state.enqueue(decision)
            self._start_runs()

    def _answered_before(self, key: str | None, message: Trigger | Recovery | CardMove) -> bool:
        """A command decided before under ``key`` (its request_id, or a card's move):
        answer it again, as then, and run nothing. False if it is new."""
        earlier = self._requests.earlier(key)
        if earlier is None or key is None:
            return False
        self._answer_again(earlier, message.connection_id, message.principal, message.request_id)
        return True

    def _answer_again(
        self,
        earlier: RunQueued | TriggerDeduplicated | TriggerRejected,
        connection_id: str,
        principal: str,
        request_id: str | None,
    ) -> None:
        """A re-sent command (the client reconnected): answer again, run nothing."""
        again = repeat_answer(earlier, connection_id=connection_id, request_id=request_id or "")
        if request_id is None:
            again = msgspec.structs.replace(again, request_id=None)
        stream = (
            workflow_stream(again.adw_id)
            if isinstance(again, TriggerDeduplicated)
            else connection_stream(connection_id)
        )
        self._log.tell(Append([NewEvent(stream, again, principal, connection_id)]))

    def _append(self, stream: str, event: object, principal: str = "system") -> None:
        self._log.tell(Append([NewEvent(stream, event, principal)]))  # type: ignore[arg-type]

    def on_stop(self) -> None:
        """Stop every running workflow (each records its run as interrupted)."""
        if self._wake is not None:
            self._wake.cancel()
        close = getattr(self._lineage_of, "close", None)
        if close is not None:
            close()  # on this thread, which opened it
        futures = [ref.stop(block=False) for ref in self._workers.values()]
        for future in futures:
            try:
                future.get(timeout=self._grace_s + 10)
            except Exception:
                log.exception("a workflow actor did not stop cleanly")
        self._workers.clear()

    def _on_trigger(self, message: Trigger) -> None:
        rid = message.request_id
        if self._answered_before(rid, message):
            return
        decision = self._decide(message.data, message.connection_id, rid)
        self._requests.remember(rid, decision)
        self._admit(decision, message.connection_id, message.principal)

    def route_update(
        self, adw_id: str, message: object, token: str | None, local: bool
    ) -> RouteOutcome:
        """Hand a workflow's own report (HTTP) to its running WorkflowActor;
        the HTTP layer turns the outcome into its status code."""
        verdict, key = authorise_update(self._workers, self._tokens, adw_id, token, local=local)
        if key is None:
            return RouteOutcome.FORBIDDEN if verdict == "forbidden" else RouteOutcome.NOT_FOUND
        with contextlib.suppress(pykka.ActorDeadError):
            self._workers[key].tell(message)
        return RouteOutcome.ACCEPTED

    def _on_cancel(self, message: Cancel) -> None:
        adw_id, reason = message.data.adw_id, message.data.reason or "cancelled by a client"
        decision = decide_cancel(self._state, adw_id)
        request = CancelRequested(
            adw_id=adw_id,
            reason=reason,
            outcome=decision.outcome,
            connection_id=message.connection_id,
            request_id=message.request_id,
            force=message.force,
        )
        self._log.tell(
            Append(
                [
                    NewEvent(
                        workflow_stream(adw_id),
                        request,
                        message.principal,
                        message.connection_id,
                    )
                ]
            )
        )
        if decision.outcome == "not_found":
            message.reply(
                encode(
                    Error(
                        ErrorData(
                            message=f"No queued or running run has adw_id {adw_id!r}; "
                            "nothing to cancel.",
                            code=ErrorCode.NOT_FOUND,
                            details={"field": "data.adw_id", "adw_id": adw_id},
                        ),
                        request_id=message.request_id,
                    )
                )
            )
            return
        for key in (*decision.running, *decision.waiting):
            worker = self._workers.get(key)
            if worker is not None:
                # The run may have ended a moment ago; its RunEnded is then on its way.
                with contextlib.suppress(pykka.ActorDeadError):
                    verb = "terminated" if message.force else "cancelled"
                    worker.tell(Stop(f"{verb}: {reason}", cancelled=True, force=message.force))
                continue
            self._state.finish(key)
            self._log.tell(
                Append(
                    [
                        NewEvent(
                            workflow_stream(adw_id),
                            RunFailed(
                                adw_id=adw_id,
                                workflow_type=key[1],
                                reason=f"cancelled before it started: {reason}",
                                cancelled=True,
                            ),
                            message.principal,
                            message.connection_id,
                        )
                    ]
                )
            )

    def _fail_unstartable(self, key: RunKey, why: str, *, timed_out: bool = False) -> None:
        """End a run that cannot start, with its classified report."""
        run = self._state.active[key]
        self._state.finish(key)
        reason = why if timed_out else f"could not start: {why}"
        failed = RunFailed(adw_id=key[0], workflow_type=key[1], reason=reason)
        error = TIMEOUT if timed_out else SPAWN
        reported = report(
            error,
            error_id=secrets.token_hex(6),
            adw_id=key[0],
            workflow_type=key[1],
            reason=reason,
            logs_path=run.logs_path,
            attempt=run.attempt,
        )
        self._log.tell(Append([NewEvent(workflow_stream(key[0]), e) for e in (failed, reported)]))

    def _start_runs(self) -> None:
        freed = True
        while freed:  # a run that cannot start frees its slot for the next one
            freed = False
            now = self._clock()
            for key in runs_to_start(
                self._state,
                catalogue=self._catalogue,
                max_concurrent=self._max_concurrent,
                now=now,
            ):
                freed |= not self._start(key)
        self._wake_for_retries()

    def _wake_for_retries(self) -> None:
        """Look again when the earliest retry's backoff ends."""
        due = [
            run.not_before
            for key in self._state.queue
            if (run := self._state.active[key]).not_before is not None
        ]
        if not due or self._wake is not None:
            return
        delay = max(0.0, min(due) - self._clock())
        ref = self.actor_ref
        self._wake = threading.Timer(delay, lambda: _tell_quietly(ref, _Wake()))
        self._wake.daemon = True
        self._wake.start()

    def _start(self, key: RunKey) -> bool:
        """Start one waiting run; False if it failed before it could start."""
        self._state.start(key)
        run = self._state.active[key]
        spec = self._catalogue.get(run.workflow_type)
        if spec is None:  # recovered from the log, since removed from the config
            self._fail_unstartable(key, "its workflow type is no longer in the catalogue")
            return False
        timeout_s = attempt_timeout(spec, run, self._clock())
        if timeout_s is None:  # the whole run's schedule_to_close_s ran out while it waited
            self._fail_unstartable(
                key,
                f"timed out: its schedule_to_close_s ({spec.schedule_to_close_s:g} s) ran "
                "out before it could start",
                timed_out=True,
            )
            return False
        token = self._tokens[key] = secrets.token_urlsafe(16)
        plan = plan_launch(
            spec,
            python=self._python,
            project_dir=self._project_dir,
            data_dir=self._data_dir,
            workflow_type=run.workflow_type,
            adw_id=run.adw_id,
            issue_number=run.issue_number,
            model_set=run.model_set,
            trigger_reason=run.trigger_reason,
            base_env={**os.environ, **self._server_env, "ADWD_RUN_TOKEN": token},
            stages=run.stages,
            config=run.config,
            timeout_s=timeout_s,
        )
        self._workers[key] = WorkflowActor.start(
            adw_id=run.adw_id,
            workflow_type=run.workflow_type,
            plan=plan,
            request=run,
            event_log=self._log,
            scheduler=self.actor_ref,
            grace_s=self._grace_s,
            expected_s=expected_duration(self._recent.get(run.workflow_type, ())),
            card_stage=self._stages.get(run.adw_id, "backlog"),
            log_lines_per_s=self._log_lines_per_s,
            correlation_id=run.connection_id or "",
            crash_after_spawn=self._faults and run.trigger_reason == CRASH_AFTER_SPAWN,
            spec=spec,
            # A type's own policy wins; else an error class's, else the service's.
            retry=spec.retry or self._retry,
            retry_classes={} if spec.retry else self._retry_classes,
        )
        return True


class _Wake(msgspec.Struct, frozen=True):
    """SchedulerActor: a retry's backoff has ended; start what may start."""


def _tell_quietly(ref: pykka.ActorRef[Any], message: object) -> None:
    with contextlib.suppress(pykka.ActorDeadError):
        ref.tell(message)
