"""RunLifecycle, the pure rules of one run, under hypothesis: a state machine
that drives it with any sequence of what can happen to a run."""

from __future__ import annotations

import signal

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from adwd.actors.catalogue import DEFAULT_CATALOGUE, RetryPolicy
from adwd.actors.classify import CLASSES
from adwd.actors.lifecycle import (
    INTERRUPTED,
    CheckLater,
    Ended,
    KillLater,
    Output,
    RunLifecycle,
    Signal,
    StopLater,
    exit_reason,
)
from adwd.events.domain import (
    ActorFailed,
    ErrorReported,
    RunCompleted,
    RunFailed,
    RunLogged,
    RunProgress,
    RunStarted,
    StageChanged,
)
from adwd.projections.stages import STAGES

TERMINAL = (RunCompleted, RunFailed)
SDLC = DEFAULT_CATALOGUE["adw_sdlc_iso"]
HEARTBEAT_S = 5.0


class RunMachine(RuleBasedStateMachine):
    """Everything a run's actor may be told, in any order the world allows."""

    def __init__(self) -> None:
        super().__init__()
        # A composite, watched for hangs and retried by the default policy.
        self.run = RunLifecycle(
            adw_id="a1",
            workflow_type="adw_sdlc_iso",
            card_stage="plan",
            stages=SDLC.stages,
            done_stage=SDLC.completes_to,
            log_lines_per_s=5.0,
            grace_s=1.0,
            timeout_s=30.0,
            logs_path="/x/execution.log",
            heartbeat_s=HEARTBEAT_S,
            retry=RetryPolicy(),
        )
        self.last_activity = 0.0
        self.stop_cause = "cancel"
        self.forced = False
        self.outputs: list[Output] = []
        self.now = 100.0
        self.spawned = False
        self.stop: tuple[str, bool] | None = None
        self.exit_code: int | None = None
        self.ended_by: str | None = None

    def _feed(self, outputs: list[Output], cause: str) -> None:
        if any(isinstance(o, TERMINAL) for o in outputs) and self.ended_by is None:
            self.ended_by = cause
        self.outputs += outputs

    # -- what can happen ------------------------------------------------------

    @precondition(lambda self: not self.spawned and self.ended_by is None)
    @rule()
    def spawn(self) -> None:
        self.spawned = True
        out = self.run.spawned(pid=42, argv=["x"], cwd="/", proc_start=7, now=self.now)
        self.last_activity = self.now
        assert isinstance(out[0], RunStarted)
        assert StopLater(30.0, "timed out after 30 s") in out
        assert CheckLater(HEARTBEAT_S) in out
        self._feed(out, "spawn")

    @precondition(lambda self: not self.spawned and self.ended_by is None)
    @rule()
    def spawn_fails(self) -> None:
        self._feed(self.run.spawn_failed("could not start 'x'"), "spawn_failed")

    @rule(
        percent=st.none() | st.integers(0, 100),
        step=st.sampled_from([None, "", "Planning", *(f"Stage: {s}" for s in STAGES)]),
    )
    def progress(self, percent: int | None, step: str | None) -> None:
        if self.spawned and not self.run.ended:
            self.last_activity = self.now
        self._feed(self.run.progress(percent, step, "m", self.now), "progress")

    @rule(stage=st.sampled_from(STAGES))
    def stage_report(self, stage: str) -> None:
        self._feed(self.run.stage_reported(stage, "moved"), "stage")

    @rule(dt=st.floats(0, 2), n=st.integers(1, 40))
    def log_lines(self, dt: float, n: int) -> None:
        self.now += dt
        for _ in range(n):
            if self.spawned and not self.run.ended:
                self.last_activity = self.now
            self._feed(self.run.log_line("INFO", "line", self.now), "log")

    @rule(reason=st.sampled_from(["cancelled by a user", "timed out after 30 s"]), c=st.booleans())
    def stop_requested(self, reason: str, c: bool) -> None:
        out = self.run.stop_requested(reason, cancelled=c)
        if out:
            assert self.stop is None
            assert out == [Signal(signal.SIGTERM), KillLater(1.0)]
            self.stop = (reason, c)
        self._feed(out, "stop")

    @rule(dt=st.floats(0, 10))
    def heartbeat_due(self, dt: float) -> None:
        self.now += dt
        was_stopping = self.run.stop_requested_reason is not None
        out = self.run.heartbeat_due(self.now)
        if any(isinstance(o, Signal) for o in out):
            assert not was_stopping
            assert self.now - self.last_activity >= HEARTBEAT_S  # hung, not merely quiet
            assert self.stop is None
            self.stop = (self.run.stop_requested_reason or "", False)
            self.stop_cause = "heartbeat"
        elif out:
            (check,) = out
            assert isinstance(check, CheckLater)
            assert 0 < check.delay_s <= HEARTBEAT_S
        self._feed(out, "heartbeat")

    @rule()
    def terminate(self) -> None:
        out = self.run.stop_requested("terminated: stuck", cancelled=True, force=True)
        if out:
            assert out == [Signal(signal.SIGKILL)]
            if self.stop is None:
                self.stop = ("terminated: stuck", True)
                self.forced = True
        self._feed(out, "terminate")

    @rule()
    def kill_due(self) -> None:
        out = self.run.kill_due()
        assert out in ([], [Signal(signal.SIGKILL)])
        self._feed(out, "kill")

    @precondition(lambda self: self.spawned)
    @rule(code=st.sampled_from([0, 1, 2, -9, -15, 75]), dt=st.floats(0, 100))
    def exited(self, code: int, dt: float) -> None:
        self.now += dt
        if self.ended_by is None:
            self.exit_code = code
        self._feed(self.run.exited(code, None, self.now, last_line="boom"), "exit")

    @rule()
    def shutdown(self) -> None:
        self._feed(self.run.interrupted(None, self.now), "shutdown")

    @rule()
    def actor_fails(self) -> None:
        out = self.run.failed_inside("ValueError", None, self.now)
        assert isinstance(out[0], ActorFailed)
        self._feed(out, "failed_inside")

    # -- what must always hold ------------------------------------------------

    @invariant()
    def one_terminal_event_then_ended_then_silence(self) -> None:
        terminal = [i for i, o in enumerate(self.outputs) if isinstance(o, TERMINAL)]
        ended = [i for i, o in enumerate(self.outputs) if isinstance(o, Ended)]
        assert len(terminal) <= 1
        assert len(ended) == len(terminal)
        assert self.run.ended == bool(terminal)
        if terminal:
            # The terminal event, a failure's report, then Ended.
            between = self.outputs[terminal[0] + 1 : ended[0]]
            assert all(isinstance(o, ErrorReported) for o in between), between
            assert len(between) <= 1
            after = self.outputs[ended[0] + 1 :]
            assert all(isinstance(o, ActorFailed) for o in after), after

    @invariant()
    def the_terminal_event_says_why(self) -> None:
        terminal = [o for o in self.outputs if isinstance(o, TERMINAL)]
        if not terminal:
            return
        event = terminal[0]
        if self.ended_by == "exit" and self.stop is None and self.exit_code == 0:
            assert isinstance(event, RunCompleted)
            return
        assert isinstance(event, RunFailed)
        if self.ended_by == "exit" and self.stop is not None:
            assert (event.reason, event.cancelled) == self.stop
        elif self.ended_by == "exit":
            assert self.exit_code is not None
            assert event.reason == exit_reason(self.exit_code, "boom")
            assert event.exit_code == self.exit_code
        elif self.ended_by == "shutdown":
            assert event.reason == INTERRUPTED
        elif self.ended_by == "failed_inside":
            assert "failed inside adwd" in event.reason

    @invariant()
    def every_failure_but_a_cancel_is_reported_with_its_class(self) -> None:
        failed = [o for o in self.outputs if isinstance(o, RunFailed)]
        reports = [o for o in self.outputs if isinstance(o, ErrorReported)]
        if not failed or failed[0].cancelled:
            assert reports == []
            return
        assert len(reports) == 1
        got = reports[0]
        assert got.adw_id == "a1"
        assert got.error_class in {c.id for c in CLASSES}
        assert any("/x/execution.log" in action for action in got.suggested_actions)
        expected = {
            "spawn_failed": "system.spawn",
            "shutdown": "system.interrupted",
            "failed_inside": "system.internal",
        }.get(self.ended_by or "")
        if expected is None and self.stop_cause == "heartbeat":
            expected = "workflow.heartbeat_lost"
        if expected is None:  # the workflow exited
            code = failed[0].exit_code
            killed = code is not None and code < 0 and code != -signal.SIGTERM
            expected = "system.killed" if killed else "workflow.exit_nonzero"
        assert got.error_class == expected
        # The default policy retries the transient classes once more on their own;
        # a shutdown retries nothing (the next start offers it to the user).
        retried = expected in RetryPolicy().retryable and self.ended_by != "shutdown"
        assert got.retry_in_s == (1.0 if retried else None)
        ended = [o for o in self.outputs if isinstance(o, Ended)]
        assert (ended[0].retry_in_s, ended[0].error_id) == (got.retry_in_s, got.error_id)

    @invariant()
    def the_card_moves_as_a_chain_and_a_failure_ends_in_errored(self) -> None:
        moves = [o for o in self.outputs if isinstance(o, StageChanged)]
        stage = "plan"
        for move in moves:
            assert move.from_stage == stage
            assert move.to_stage != stage
            if move.to_stage != "errored":  # within a run a card only moves forward
                assert STAGES.index(move.to_stage) > STAGES.index(stage), moves
                assert move.to_stage in (*SDLC.stages, SDLC.completes_to)
            stage = move.to_stage
        ended = [o for o in self.outputs if isinstance(o, Ended)]
        failed = [o for o in self.outputs if isinstance(o, RunFailed)]
        if ended:
            assert ended[0].stage == stage
        if failed:
            assert stage == "errored"

    @invariant()
    def signals_only_for_a_stop_request(self) -> None:
        signals = [o for o in self.outputs if isinstance(o, Signal)]
        if signals:
            assert self.stop is not None
            assert signals[0].signum == (signal.SIGKILL if self.forced else signal.SIGTERM)

    @invariant()
    def lines_over_the_rate_are_counted_not_lost(self) -> None:
        notes = [o for o in self.outputs if isinstance(o, RunLogged) and "not shown" in o.message]
        for note in notes:
            assert note.level == "WARNING"
            assert "/x/execution.log" in note.message

    @invariant()
    def progress_percent_is_the_last_one_reported(self) -> None:
        for o in self.outputs:
            if isinstance(o, RunProgress):
                assert 0 <= o.progress_percent <= 100


RunMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
test_run_lifecycle = RunMachine.TestCase


def test_a_composite_moves_its_card_only_forward_through_its_own_stages() -> None:
    run = RunLifecycle(
        adw_id="a",
        workflow_type="adw_sdlc_iso",
        card_stage="backlog",
        stages=SDLC.stages,
        done_stage=SDLC.completes_to,
    )
    out = run.spawned(pid=1, argv=["x"], cwd="/", proc_start=1, now=0.0)
    out += run.progress(50, "Stage: test", "testing")
    out += run.progress(55, "Stage: plan", "a stray report of an earlier stage")
    out += run.progress(60, "Stage: pr", "not one of its stages")
    out += run.exited(0, None, 10.0)
    moves = [(m.from_stage, m.to_stage) for m in out if isinstance(m, StageChanged)]
    assert moves == [("backlog", "plan"), ("plan", "test"), ("test", "ready-to-merge")]
    assert out[-1] == Ended("ready-to-merge", 10.0)


def test_a_completed_run_moves_its_card_onwards() -> None:
    plan = DEFAULT_CATALOGUE["adw_plan_iso"]
    run = RunLifecycle(
        adw_id="a",
        workflow_type="adw_plan_iso",
        card_stage="backlog",
        stages=plan.stages,
        done_stage=plan.completes_to,
    )
    run.spawned(pid=1, argv=["x"], cwd="/", proc_start=1, now=0.0)
    out = run.exited(0, None, 2.5)
    moved = [o for o in out if isinstance(o, StageChanged)]
    assert [(m.from_stage, m.to_stage) for m in moved] == [("plan", "build")]
    assert out[-1] == Ended("build", 2.5)
