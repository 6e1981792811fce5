"""RunLifecycle: one run from spawn to its one terminal event, as pure code.

The rules of a run (what its stop reason and exit code make of it, where
its card moves, which log lines boards see) in the manner of the websockets
library's sans-I/O ``Protocol``: each input is a method call carrying what
happened (and the time, from the caller's clock), and returns the outputs,
in order: domain events to append, and effects for the adapter to carry
out. No threads, processes, files or clocks here; ``WorkflowActor`` spawns,
reaps, pumps and performs the effects.

Promises (tests/actors/test_lifecycle.py checks them as a state machine):
exactly one terminal event (``run_completed`` or ``run_failed``) and one
``Ended`` effect per run, nothing after them, and a card that only moves
through stages the run or its workflow named.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Callable, Mapping
from typing import Literal, TypedDict

from msgspec import Struct

from adwd.actors.catalogue import RetryPolicy
from adwd.actors.classify import Cause, classify, report
from adwd.actors.ratelimit import TokenBucket
from adwd.events.domain import (
    ActorFailed,
    DomainEvent,
    ResourceUsage,
    RunCompleted,
    RunFailed,
    RunLogged,
    RunProgress,
    RunStarted,
    StageChanged,
)
from adwd.events.wire import LogLevel
from adwd.projections.stages import STAGES, is_forward

INTERRUPTED = (
    "interrupted: the service shut down while the run was in progress; "
    "trigger it again to re-run it"
)

Level = LogLevel
StopCause = Literal["cancel", "timeout", "output", "heartbeat"]


class _RunIds(TypedDict):
    """The fields naming the run, spread into each of its events."""

    adw_id: str
    workflow_type: str


class _Measured(TypedDict):
    """What a terminal event says about the run's cost, spread into it."""

    duration_s: float
    resource_usage: ResourceUsage | None
    expected_s: float | None


class Signal(Struct, frozen=True):
    """Effect: send ``signum`` to the run's whole process group."""

    signum: int


class KillLater(Struct, frozen=True):
    """Effect: call ``kill_due`` after ``delay_s`` (the grace after SIGTERM)."""

    delay_s: float


class StopLater(Struct, frozen=True):
    """Effect: call ``stop_requested(reason)`` after ``delay_s`` (the run's timeout)."""

    delay_s: float
    reason: str
    cause: Literal["timeout"] = "timeout"


class CheckLater(Struct, frozen=True):
    """Effect: call ``heartbeat_due(now)`` after ``delay_s`` (the hung-run watch)."""

    delay_s: float


class Ended(Struct, frozen=True):
    """Effect: the run is over; free its slot (``notify``) and stop its actor.

    ``stage`` is where its card was left; ``completed_in_s`` feeds the
    typical duration of its workflow type (completed runs only). A failure
    to be retried carries ``retry_in_s`` and the ``error_id``/``error_class``
    the next attempt answers.
    """

    stage: str
    completed_in_s: float | None
    notify: bool = True
    retry_in_s: float | None = None
    error_id: str | None = None
    error_class: str | None = None


Effect = Signal | KillLater | StopLater | CheckLater | Ended
Output = DomainEvent | Effect


class RunLifecycle:
    """The state of one run and the rules that move it (see the module docstring)."""

    def __init__(
        self,
        *,
        adw_id: str,
        workflow_type: str,
        card_stage: str = "backlog",
        stages: tuple[str, ...] = (),
        done_stage: str = "",
        expected_s: float | None = None,
        log_lines_per_s: float = 20.0,
        grace_s: float = 5.0,
        timeout_s: float = 0.0,
        logs_path: str = "",
        heartbeat_s: float = 0.0,
        attempt: int = 1,
        retry: RetryPolicy | None = None,
        retry_classes: Mapping[str, RetryPolicy] | None = None,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex[:12],
    ) -> None:
        self._ids: _RunIds = {"adw_id": adw_id, "workflow_type": workflow_type}
        self._workflow_type = workflow_type
        self._stage = card_stage
        self._stages = stages
        self._done_stage = done_stage
        self._expected_s = expected_s
        self._bucket = TokenBucket(rate=log_lines_per_s, burst=max(1.0, 5 * log_lines_per_s))
        self._suppressed = 0
        self._grace_s = grace_s
        self._timeout_s = timeout_s
        self._logs_path = logs_path
        self._started_at: float | None = None
        self._progress = 0
        self._new_id = new_id
        self._stop_reason: str | None = None
        self._stop_cause: Cause = "exit"
        self._cancelled = False
        self._ended = False
        self._heartbeat_s = heartbeat_s
        self._last_activity = 0.0
        self._attempt = attempt
        self._retry = retry
        self._retry_classes = dict(retry_classes or {})  # an error class's own policy

    @property
    def ended(self) -> bool:
        """Whether the run has its terminal event."""
        return self._ended

    @property
    def stop_requested_reason(self) -> str | None:
        """Why the run is being stopped (cancel, timeout...), or None."""
        return self._stop_reason

    # -- inputs ------------------------------------------------------------

    def spawn_failed(self, reason: str) -> list[Output]:
        """The child could not be started (no log, no script, no cwd...)."""
        return self._end(RunFailed(**self._ids, reason=reason), now=None, cause="spawn")

    def spawned(
        self, *, pid: int, argv: list[str], cwd: str, proc_start: int, now: float
    ) -> list[Output]:
        """The child exists (held at its gate): record it, move the card, arm the timeout."""
        if self._ended:
            return []
        self._started_at = self._last_activity = now
        out: list[Output] = [
            RunStarted(
                **self._ids,
                pid=pid,
                argv=argv,
                cwd=cwd,
                proc_start=proc_start,
                expected_s=self._expected_s,
            )
        ]
        if self._stages:
            # A new run puts its card at its own first stage, wherever an earlier run left it.
            out += self._move(self._stages[0], f"{self._workflow_type} started")
        if self._timeout_s > 0:
            out.append(StopLater(self._timeout_s, f"timed out after {self._timeout_s:g} s"))
        if self._heartbeat_s > 0:
            out.append(CheckLater(self._heartbeat_s))
        return out

    def heartbeat_due(self, now: float) -> list[Output]:
        """The hung-run watch: no output and no progress for ``heartbeat_s``
        stops the run (class ``workflow.heartbeat_lost``); else look again later."""
        if self._ended or self._stop_reason is not None or self._heartbeat_s <= 0:
            return []
        idle = now - self._last_activity
        if idle >= self._heartbeat_s:
            reason = f"hung: no output and no progress for {idle:.1f} s"
            return self.stop_requested(reason, cause="heartbeat")
        return [CheckLater(self._heartbeat_s - idle)]

    def progress(
        self,
        percent: int | None,
        current_step: str | None,
        message: str | None,
        now: float | None = None,
    ) -> list[Output]:
        """A progress line of the workflow (``Stage: X`` steps move the card)."""
        if self._ended:
            return []
        if now is not None:
            self._last_activity = now
        out: list[Output] = []
        step = current_step or ""
        if step.startswith("Stage: ") and step[7:].strip() in STAGES:
            out += self.stage_reported(step[7:].strip(), message or step)
        if percent is not None:
            self._progress = percent
        out.append(
            RunProgress(
                **self._ids,
                progress_percent=self._progress,
                current_step=current_step or "",
                message=message or "",
            )
        )
        return out

    def stage_reported(self, stage: str, message: str) -> list[Output]:
        """The workflow says it reached ``stage``: its card moves there if that is
        forward and one of the workflow's own stages (a board card never jumps
        back, nor into a column the workflow does not work in)."""
        if self._ended or self._started_at is None:  # not started: nothing ran to move it
            return []
        if self._stages and stage not in self._stages:
            return []
        if not is_forward(self._stage, stage):
            return []
        return self._move(stage, message)

    def log_line(self, level: Level, text: str, now: float) -> list[Output]:
        """A line of output: boards get at most ``log_lines_per_s`` on average."""
        if self._ended:
            return []
        self._last_activity = now
        if not self._bucket.allow(now):
            self._suppressed += 1
            return []
        return [*self._note_suppressed(), RunLogged(**self._ids, level=level, message=text)]

    def stop_requested(
        self,
        reason: str,
        *,
        cancelled: bool = False,
        cause: StopCause = "cancel",
        force: bool = False,
    ) -> list[Output]:
        """Cancel, timeout, a hung run or a failed log: SIGTERM now, SIGKILL after
        the grace. ``force`` (terminate): SIGKILL now, also to a run already
        being stopped."""
        if self._ended:
            return []
        if self._stop_reason is not None:
            return [Signal(signal.SIGKILL)] if force else []
        self._stop_reason, self._cancelled = reason, cancelled
        self._stop_cause = "exit" if cause == "cancel" else cause
        if force:
            return [Signal(signal.SIGKILL)]
        return [Signal(signal.SIGTERM), KillLater(self._grace_s)]

    def kill_due(self) -> list[Output]:
        """The grace period after SIGTERM ran out (a stray one, with no stop asked, is ignored)."""
        if self._ended or self._stop_reason is None:
            return []
        return [Signal(signal.SIGKILL)]

    def exited(
        self, returncode: int, usage: ResourceUsage | None, now: float, *, last_line: str = ""
    ) -> list[Output]:
        """The workflow exited (its group is already cleared by the adapter)."""
        if self._ended:
            return []
        measured: _Measured = {
            "duration_s": self._elapsed(now),
            "resource_usage": usage,
            "expected_s": self._expected_s,
        }
        event: DomainEvent
        if self._stop_reason is not None:
            event = RunFailed(
                **self._ids,
                **measured,
                reason=self._stop_reason,
                exit_code=returncode,
                cancelled=self._cancelled,
                progress_percent=self._progress,
            )
        elif returncode == 0:
            event = RunCompleted(**self._ids, **measured)
        else:
            event = RunFailed(
                **self._ids,
                **measured,
                reason=exit_reason(returncode, last_line),
                exit_code=returncode,
                progress_percent=self._progress,
            )
        return self._end(event, now=now, cause=self._stop_cause)

    def interrupted(self, returncode: int | None, now: float) -> list[Output]:
        """The service shuts down while the run is in progress (its group was stopped)."""
        if self._ended:
            return []
        event = RunFailed(
            **self._ids,
            reason=INTERRUPTED,
            exit_code=returncode,
            duration_s=self._elapsed(now),
            progress_percent=self._progress,
            expected_s=self._expected_s,
        )
        return self._end(event, now=now, notify=False, cause="interrupted")

    def failed_inside(self, exception: str, returncode: int | None, now: float) -> list[Output]:
        """Supervision: the run's actor failed (its group was stopped)."""
        out: list[Output] = [
            ActorFailed(
                actor="workflow", exception=exception, adw_id=self._ids["adw_id"],
                action="run failed",
            )
        ]  # fmt: skip
        if self._ended:
            return out
        event = RunFailed(
            **self._ids,
            reason=f"failed inside adwd ({exception} in the run's actor), not in the "
            "workflow; its processes were stopped. Trigger it again to re-run it",
            exit_code=returncode,
            duration_s=self._elapsed(now),
            progress_percent=self._progress,
            expected_s=self._expected_s,
        )
        # Straight to the end: the card moves and the slot is freed, as for any failure.
        return out + self._end(event, now=now, cause="internal")

    # -- rules -------------------------------------------------------------

    def _move(self, stage: str, message: str) -> list[Output]:
        if stage == self._stage:
            return []
        moved = StageChanged(**self._ids, from_stage=self._stage, to_stage=stage, message=message)
        self._stage = stage
        return [moved]

    def _note_suppressed(self) -> list[Output]:
        if not self._suppressed:
            return []
        text = f"{self._suppressed} lines not shown (rate limit); all are in {self._logs_path}"
        self._suppressed = 0
        return [RunLogged(**self._ids, level="WARNING", message=text)]

    def _end(
        self, event: DomainEvent, *, now: float | None, cause: Cause, notify: bool = True
    ) -> list[Output]:
        """The one terminal event, after the card's move; a failure's classified
        report (not a cancel's: nothing failed); then Ended."""
        out = self._note_suppressed()
        # The card moves first, so the terminal status and metrics stay the run's last words.
        failed_in = self._stage
        done = self._done_stage
        if isinstance(event, RunCompleted) and done and is_forward(self._stage, done):
            out += self._move(done, f"{self._workflow_type} completed")
        elif isinstance(event, RunFailed):
            out += self._move("errored", event.reason)
        self._ended = True
        out.append(event)
        took = event.duration_s if isinstance(event, RunCompleted) else None
        if not isinstance(event, RunFailed) or event.cancelled:
            out.append(Ended(self._stage, took, notify))
            return out
        error = classify(cause, event.exit_code)
        # A shutdown (notify=False) retries nothing now: recovery at the next start does.
        policy = self._retry_classes.get(error.id, self._retry)
        retry_in = policy.retry_in(error.id, self._attempt) if policy and notify else None
        error_id = self._new_id()
        out.append(
            report(
                error,
                error_id=error_id,
                adw_id=self._ids["adw_id"],
                workflow_type=self._workflow_type,
                reason=event.reason,
                logs_path=self._logs_path,
                attempt=self._attempt,
                retry_in_s=retry_in,
                stage=failed_in,
                resumable=len(self._stages) > 1,
            )
        )
        out.append(Ended(self._stage, took, notify, retry_in, error_id, error.id))
        return out

    def _elapsed(self, now: float | None) -> float:
        if self._started_at is None or now is None:
            return 0.0
        return round(now - self._started_at, 6)


def exit_reason(returncode: int, last_line: str = "") -> str:
    """A person-readable reason: the exit status and the last line of output."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        reason = f"killed by {name}"
    else:
        reason = f"exited with code {returncode}"
    return f"{reason}: {last_line}" if last_line else reason
