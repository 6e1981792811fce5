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
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pykka

from adwd.actors.admission import (
    RequestMemory,
    RunKey,
    SchedulerState,
    authorise_update,
    decide_cancel,
    decide_trigger,
    repeat_answer,
    runs_to_start,
)
from adwd.actors.base import CRASH_AFTER_SPAWN, Actor
from adwd.actors.catalogue import WorkflowSpec, plan_launch
from adwd.actors.messages import (
    Append,
    Cancel,
    Listening,
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
    RunFailed,
    RunQueued,
    TriggerDeduplicated,
    connection_stream,
    workflow_stream,
)
from adwd.events.errors import ErrorCode
from adwd.events.store import NewEvent
from adwd.events.wire import Error, ErrorData
from adwd.projections.metrics import RECENT, expected_duration

log = logging.getLogger(__name__)


REMEMBERED_REQUESTS = 10_000  # request_ids answered again if re-sent


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
        known_requests: Sequence[RunQueued] = (),
        card_stages: Mapping[str, str] | None = None,
        log_lines_per_s: float = 20.0,
        id_factory: Callable[[], str] = new_adw_id,
        fault_injection: bool = False,
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
            key = (message.adw_id, message.workflow_type)
            if message.stage is not None:
                self._stages[message.adw_id] = message.stage
            if message.completed_in_s is not None:
                recent = self._recent.setdefault(message.workflow_type, deque(maxlen=RECENT))
                recent.append(message.completed_in_s)
            self._state.finish(key)
            self._workers.pop(key, None)
            self._tokens.pop(key, None)
            self._start_runs()
        return None

    def on_stop(self) -> None:
        """Stop every running workflow (each records its run as interrupted)."""
        futures = [ref.stop(block=False) for ref in self._workers.values()]
        for future in futures:
            try:
                future.get(timeout=self._grace_s + 10)
            except Exception:
                log.exception("a workflow actor did not stop cleanly")
        self._workers.clear()

    def _on_trigger(self, message: Trigger) -> None:
        rid = message.request_id
        earlier = self._requests.earlier(rid)
        if earlier is not None and rid is not None:
            # A re-sent command (the client reconnected): answer again, run nothing.
            again = repeat_answer(earlier, connection_id=message.connection_id, request_id=rid)
            stream = (
                workflow_stream(again.adw_id)
                if isinstance(again, TriggerDeduplicated)
                else connection_stream(message.connection_id)
            )
            self._log.tell(
                Append([NewEvent(stream, again, message.principal, message.connection_id)])
            )
            return
        decision = decide_trigger(
            self._state,
            message.data,
            catalogue=self._catalogue,
            data_dir=self._data_dir,
            max_queue=self._max_queue,
            connection_id=message.connection_id,
            new_adw_id=self._new_id(),
            request_id=rid,
        )
        self._requests.remember(rid, decision)
        if isinstance(decision, RunQueued | TriggerDeduplicated):
            stream = workflow_stream(decision.adw_id)
        else:
            stream = connection_stream(message.connection_id)
        self._log.tell(
            Append([NewEvent(stream, decision, message.principal, message.connection_id)])
        )
        if isinstance(decision, RunQueued):
            self._state.enqueue(decision)
            self._start_runs()

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
                    worker.tell(Stop(reason=f"cancelled: {reason}", cancelled=True))
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

    def _fail_unstartable(self, key: RunKey, why: str) -> None:
        self._state.finish(key)
        event = RunFailed(adw_id=key[0], workflow_type=key[1], reason=f"could not start: {why}")
        self._log.tell(Append([NewEvent(workflow_stream(key[0]), event)]))

    def _start_runs(self) -> None:
        freed = True
        while freed:  # a run that cannot start frees its slot for the next one
            freed = False
            for key in runs_to_start(
                self._state, catalogue=self._catalogue, max_concurrent=self._max_concurrent
            ):
                freed |= not self._start(key)

    def _start(self, key: RunKey) -> bool:
        """Start one waiting run; False if it failed before it could start."""
        self._state.start(key)
        run = self._state.active[key]
        spec = self._catalogue.get(run.workflow_type)
        if spec is None:  # recovered from the log, since removed from the config
            self._fail_unstartable(key, "its workflow type is no longer in the catalogue")
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
        )
        return True
