"""WorkflowActor: one run, one real child process in its own process group.

The actor spawns the child, records what happens as events, and ends it on
cancel, timeout or shutdown (SIGTERM to the group, SIGKILL after a grace
period). Reader threads copy the child's stdout and stderr into the run's
log and turn progress lines into messages; a waiter thread is the one
reaper of the child.

The start has two phases. The child is spawned held at a gate (a shell that
waits for one line on a pipe before it ``exec``s the workflow, keeping its
pid); ``run_started`` with its pid, group and start time is committed; only
then is the gate opened. If adwd dies in between, the pipe closes, the gate
exits at once without running anything, and recovery, which does not know
the run started, queues it again: no run is ever executed twice.

A run is its process group. When the workflow exits, whatever it left in
its group is stopped too before the run's end is recorded.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, cast

import msgspec
import pykka

from adwd.actors.adwstate import (
    has_loader,
    merged_state,
    read_state,
    state_path,
    write_state,
)
from adwd.actors.agentstream import AgentStream
from adwd.actors.base import Actor
from adwd.actors.catalogue import LaunchPlan, RetryPolicy, WorkflowSpec
from adwd.actors.lifecycle import (
    CheckLater,
    Ended,
    KillLater,
    Output,
    RunLifecycle,
    Signal,
    StopLater,
)
from adwd.actors.messages import (
    AgentRecords,
    AgentReport,
    Append,
    Exited,
    Kill,
    LogLine,
    Progress,
    RunEnded,
    StageReport,
    Stop,
)
from adwd.actors.processes import group_alive, start_ticks, usage_of
from adwd.actors.progress import parse_progress_line
from adwd.actors.watcher import Items, Offsets, Watcher, recorded_offsets
from adwd.events.domain import (
    AdwStateWritten,
    DomainEvent,
    ResourceUsage,
    RunCompleted,
    RunFailed,
    RunQueued,
    RunStarted,
    workflow_stream,
)
from adwd.events.store import NewEvent
from adwd.events.wire import LogLevel
from adwd.projections.stages import next_stage

log = logging.getLogger(__name__)

# The gate: wait for "go" on stdin (the gate pipe), give the workflow
# /dev/null as stdin, and become it (same pid). EOF, because adwd died before
# run_started was committed, exits 75 (EX_TEMPFAIL) having run nothing.
GATE = 'IFS= read -r go; exec </dev/null; [ "$go" = go ] || exit 75; exec "$@"'
DRAIN_S = 2.0  # after the child exits, how long its last output may take to arrive


class WorkflowActor(Actor):
    """Runs one workflow run: spawns, reaps and pumps; its rules are RunLifecycle's."""

    KIND = "workflow"

    def __init__(
        self,
        *,
        adw_id: str,
        workflow_type: str,
        plan: LaunchPlan,
        request: RunQueued,
        event_log: pykka.ActorRef[pykka.Actor],
        scheduler: pykka.ActorRef[pykka.Actor],
        grace_s: float,
        expected_s: float | None = None,
        card_stage: str = "backlog",
        log_lines_per_s: float = 20.0,
        principal: str = "system",
        correlation_id: str = "",
        crash_after_spawn: bool = False,
        spec: WorkflowSpec | None = None,
        retry: RetryPolicy | None = None,
        retry_classes: Mapping[str, RetryPolicy] | None = None,
    ) -> None:
        super().__init__()
        spec = spec or WorkflowSpec()
        # An orchestrator's run works through the stages it was given, not its default ones.
        stages = tuple(request.covers) if request.covers is not None else spec.stages
        done = spec.done_stage or (next_stage(stages[-1]) if stages else "")
        self._crash_after_spawn = crash_after_spawn  # test seam, see CRASH_AFTER_SPAWN
        self._adw_id = adw_id
        self._workflow_type = workflow_type
        self._plan = plan
        self._request = request
        self._log = event_log
        self._scheduler = scheduler
        self._grace_s = grace_s
        self._principal = principal
        self._correlation_id = correlation_id
        self._run = RunLifecycle(
            adw_id=adw_id,
            workflow_type=workflow_type,
            card_stage=card_stage,
            expected_s=expected_s,
            log_lines_per_s=log_lines_per_s,
            grace_s=grace_s,
            timeout_s=plan.timeout_s,
            logs_path=plan.logs_path,
            stages=stages,
            done_stage=done,
            heartbeat_s=spec.heartbeat_s,
            attempt=request.attempt,
            retry=retry,
            retry_classes=retry_classes,
        )
        self._proc: subprocess.Popen[bytes] | None = None
        self._timers: list[threading.Timer] = []
        self._exit = _ExitBox()  # the waiter, the one reaper, fills it
        self._gate: int | None = None  # write end of the start gate, until opened
        self._stream = AgentStream(adw_id, workflow_type)  # the agent activity (issue 14)
        self._watcher: Watcher | None = None
        self._serial = 0  # of the newest watcher batch whose offsets were recorded

    # -- lifecycle ---------------------------------------------------------

    def on_start(self) -> None:
        """Spawn the child held at its gate and record RunStarted (or RunFailed)."""
        plan = self._plan
        try:
            Path(plan.work_dir).mkdir(parents=True, exist_ok=True)
            log_path = Path(plan.logs_path)
            log_path.parent.mkdir(parents=True, exist_ok=True)
            # The whole trigger (issue_json, stages, config...) for the workflow to read.
            Path(plan.trigger_file).write_bytes(msgspec.json.encode(self._request))
            log_file = log_path.open("ab")
        except OSError as exc:
            self._apply(self._run.spawn_failed(f"could not create its log: {exc}"))
            return
        try:
            self._write_adw_state(plan)
        except OSError as exc:
            log_file.close()
            self._apply(
                self._run.spawn_failed(
                    f"could not write its ADW state ({exc}); check that the run's cwd "
                    f"{plan.cwd!r} is writable."
                )
            )
            return
        header = f"--- adwd: {' '.join(plan.argv)} (cwd {plan.cwd}) at {time.ctime()}\n"
        log_file.write(header.encode())
        log_file.flush()
        gate_in, self._gate = os.pipe()  # not inherited by any other child
        try:
            self._check_launchable(plan)
            self._proc = subprocess.Popen(
                ["/bin/sh", "-c", GATE, "adwd-gate", *plan.argv],
                cwd=plan.cwd,
                env=plan.env,
                stdin=gate_in,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # own process group: a signal reaches its children
            )
        except OSError as exc:
            self._close_gate()
            log_file.write(f"--- adwd: could not start: {exc}\n".encode())
            log_file.close()
            self._apply(
                self._run.spawn_failed(
                    f"could not start {plan.argv[0]!r}: {exc.strerror or exc}"
                    f"{f' ({exc.filename})' if exc.filename else ''}. "
                    "Check the workflow's argv and cwd in the config."
                )
            )
            return
        finally:
            os.close(gate_in)
        if self._crash_after_spawn:
            os.kill(os.getpid(), signal.SIGKILL)
        pid = self._proc.pid
        self._apply(
            self._run.spawned(
                pid=pid,
                argv=plan.argv,
                cwd=plan.cwd,
                proc_start=start_ticks(pid),
                now=time.monotonic(),
            )
        )
        log.info(
            "run %s (%s) started: pid %d",
            self._adw_id,
            self._workflow_type,
            pid,
            extra={"adw_id": self._adw_id},
        )
        tell = self.actor_ref.tell
        for target, args, name in (
            # stderr gets its own reader and its own append handle: each writes whole lines.
            (_pump_stderr, (self._proc, log_path.open("ab"), tell), "stderr"),
            (_pump, (self._proc, log_file, tell, self._exit), "reader"),
            (_await_exit, (self._proc, tell, self._exit), "waiter"),
        ):
            threading.Thread(
                target=target, args=args, name=f"adw-{name}-{self._adw_id}", daemon=True
            ).start()
        self._start_watcher(plan)

    def _write_adw_state(self, plan: LaunchPlan) -> None:
        """The ADW state the scripts load, created or merged, then its fact
        (appended before run_started: the log says what the child found)."""
        if not has_loader(plan.cwd):
            return  # no ADW scripts there to read it (and never create a cwd here)
        path = state_path(plan.cwd, self._adw_id)
        existing = read_state(path)
        state, changed = merged_state(self._request, existing)
        write_state(path, state)
        written = AdwStateWritten(
            adw_id=self._adw_id,
            workflow_type=self._workflow_type,
            path=str(path),
            created=existing is None,
            data_source=str(state.get("data_source", "github")),
            changed=changed,
        )
        self._tell_log(Append([self._new(written)]))

    def _start_watcher(self, plan: LaunchPlan) -> None:
        """Tail the run's agent files from where the last run of its adw_id stopped."""
        # logs_path is <data_dir>/agents/<adw_id>/<workflow_type>/execution.log
        events_db = Path(plan.logs_path).parents[3] / "events.db"
        me = self.actor_ref

        def deliver(items: Items, offsets: Offsets) -> None:
            serial = watcher.serial
            _tell_quietly(me, AgentRecords(items, offsets, serial))

        root = Path(plan.cwd) / "agents" / self._adw_id
        # No agent files yet: nothing recorded can apply to them (a file made later is
        # read from its start), so the log need not be read.
        offsets = recorded_offsets(events_db, self._adw_id) if root.is_dir() else {}
        watcher = Watcher(
            root,
            offsets,
            deliver,
            name=f"adw-watch-{self._adw_id}",
        )
        self._watcher = watcher
        watcher.start()

    def _on_records(self, items: Items, offsets: Offsets, serial: int) -> None:
        newest = serial > self._serial
        self._serial = max(self._serial, serial)
        self._record(self._stream.records(items, offsets if newest else None, time.time()))

    def _drain_watcher(self) -> None:
        """Record what the agent wrote up to now, then what was coalesced."""
        watcher, self._watcher = self._watcher, None
        if watcher is None:
            return
        for items, offsets, serial in watcher.drain():
            self._on_records(items, offsets, serial)
        self._record(self._stream.final(time.time()))

    def _record(self, events: list[DomainEvent]) -> None:
        if events:
            self._tell_log(Append([self._new(e) for e in events]))

    @staticmethod
    def _check_launchable(plan: LaunchPlan) -> None:
        """What Popen of the workflow itself would find wrong, found before the
        gate starts (the gate is a shell, which always starts)."""
        if not Path(plan.cwd).is_dir():
            raise FileNotFoundError(errno.ENOENT, "no such directory", plan.cwd)
        program = plan.argv[0]
        if os.sep in program:
            path = Path(plan.cwd, program)
            if not path.is_file():
                raise FileNotFoundError(errno.ENOENT, "no such file", str(path))
            if not os.access(path, os.X_OK):
                raise PermissionError(errno.EACCES, "not executable", str(path))
        elif shutil.which(program, path=plan.env.get("PATH", os.defpath)) is None:
            raise FileNotFoundError(errno.ENOENT, "not found on PATH", program)

    def on_receive(self, message: object) -> object:
        """What happened to the run, handed to its lifecycle; the effects carried out."""
        run = self._run
        if isinstance(message, Progress):
            outputs = run.progress(
                message.progress_percent, message.current_step, message.message, time.monotonic()
            )
        elif isinstance(message, LogLine):
            outputs = run.log_line(message.level, message.text, time.monotonic())
        elif isinstance(message, StageReport):
            outputs = run.stage_reported(
                message.stage, message.message or f"moved to {message.stage}"
            )
        elif isinstance(message, Exited):
            outputs = self._on_exit(message.returncode, message.usage)
        elif isinstance(message, Stop):
            outputs = run.stop_requested(
                message.reason,
                cancelled=message.cancelled,
                cause=message.cause,
                force=message.force,
            )
        elif isinstance(message, _HeartbeatDue):
            outputs = run.heartbeat_due(time.monotonic())
        elif isinstance(message, Kill):
            outputs = run.kill_due()
        elif isinstance(message, OutputFailed):
            outputs = run.stop_requested(
                f"its output could not be written: {message.reason}", cause="output"
            )
        elif isinstance(message, AgentRecords):
            self._on_records(message.items, message.offsets, message.serial)
            outputs = []
        elif isinstance(message, AgentReport):
            self._record(self._stream.reported((message.kind, message.data), time.time()))
            outputs = []
        elif isinstance(message, _OpenGate):
            self._open_gate()
            outputs = []
        else:
            outputs = []
        self._apply(outputs)
        return None

    def on_stop(self) -> None:
        """Service shutdown: end the child's group and record the run as interrupted."""
        for timer in self._timers:
            timer.cancel()
        if self._run.ended or self._proc is None:
            return
        returncode = self._stop_group()
        self._drain_watcher()
        self._apply(self._run.interrupted(returncode, time.monotonic()))

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: object,
    ) -> None:
        """Supervision: a failure in this actor ends this run and nothing else.

        The process group is stopped (it can no longer be supervised), the run
        fails with a reason that blames adwd, not the workflow, and the
        scheduler frees the slot. pykka has logged the traceback already.
        """
        name = exception_type.__name__ if exception_type else "unknown"
        for timer in self._timers:
            timer.cancel()
        returncode = self._stop_group() if self._proc is not None else None
        with contextlib.suppress(Exception):  # a failing actor records what it can
            self._drain_watcher()
        self._apply(self._run.failed_inside(name, returncode, time.monotonic()))

    # -- effects -----------------------------------------------------------

    def _on_exit(self, returncode: int, usage: ResourceUsage | None) -> list[Output]:
        if self._run.ended:
            return []
        if self._proc is not None and group_alive(self._proc.pid):
            # The workflow is done; what it left in its group (a server, a test
            # runner) is not: a run's end means its processes are gone.
            self._stop_group()
        self._drain_watcher()  # the agent's last records come before the run's end
        last = _last_output_line(self._plan.logs_path) if returncode != 0 else ""
        return self._run.exited(returncode, usage, time.monotonic(), last_line=last)

    def _apply(self, outputs: list[Output]) -> None:
        """Carry out the lifecycle's outputs, in order."""
        for out in outputs:
            if isinstance(out, Signal):
                self._signal(out.signum)
            elif isinstance(out, KillLater):
                self._later(out.delay_s, Kill())
            elif isinstance(out, StopLater):
                self._later(out.delay_s, Stop(reason=out.reason, cause=out.cause))
            elif isinstance(out, CheckLater):
                self._later(out.delay_s, _HeartbeatDue())
            elif isinstance(out, Ended):
                self._ended(out)
            elif isinstance(out, RunStarted):
                # The gate opens once this is committed (two-phase start).
                append = Append([self._new(out)], committed=self._gate_opener())
                self._tell_log(append)
            else:
                self._tell_log(Append([self._new(out)]))
                if isinstance(out, RunCompleted | RunFailed):
                    outcome = f"failed: {out.reason}" if isinstance(out, RunFailed) else "completed"
                    log.info(
                        "run %s (%s) %s",
                        self._adw_id,
                        self._workflow_type,
                        outcome,
                        extra={"adw_id": self._adw_id},
                    )

    def _gate_opener(self) -> Callable[[], None]:
        me = self.actor_ref
        return lambda: _tell_quietly(me, _OpenGate())

    def _ended(self, end: Ended) -> None:
        self._close_gate()
        for timer in self._timers:
            timer.cancel()
        if end.notify:
            ended = RunEnded(
                self._adw_id,
                self._workflow_type,
                end.completed_in_s,
                end.stage,
                retry_in_s=end.retry_in_s,
                error_id=end.error_id,
                error_class=end.error_class,
            )
            _tell_quietly(self._scheduler, ended)  # a dead scheduler: the service is stopping
            self.actor_ref.stop(block=False)

    def _close_gate(self) -> None:
        if self._gate is not None:
            os.close(self._gate)  # a gate still waiting exits without running anything
            self._gate = None

    def _open_gate(self) -> None:
        """run_started is committed: let the workflow run."""
        if self._gate is None or self._run.stop_requested_reason is not None or self._run.ended:
            self._close_gate()  # stopped before it started: it runs nothing
            return
        with contextlib.suppress(OSError):  # a gate already gone reads nothing
            os.write(self._gate, b"go\n")
        self._close_gate()

    def _stop_group(self) -> int | None:
        """SIGTERM the run's whole group; SIGKILL what is left of it after the
        grace period; the leader's exit code (reaped by the waiter)."""
        assert self._proc is not None
        self._close_gate()
        pgid = self._proc.pid
        deadline = time.monotonic() + self._grace_s
        self._signal(signal.SIGTERM)
        self._exit.wait(self._grace_s)
        # The leader may be gone while what it started ignores SIGTERM: wait for
        # the group, not the leader.
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.02)  # no wait() exists for members we did not start
        if group_alive(pgid) or not self._exit.done:
            self._signal(signal.SIGKILL)
        self._exit.wait(self._grace_s + 5)
        return self._exit.returncode

    def _new(self, event: DomainEvent) -> NewEvent:
        return NewEvent(workflow_stream(self._adw_id), event, self._principal, self._correlation_id)

    def _tell_log(self, append: Append) -> None:
        try:
            self._log.tell(append)
        except pykka.ActorDeadError:
            # The log failed and the service is stopping: this run's events cannot be
            # recorded; recovery records the run as interrupted at the next start.
            log.warning("not recorded (event log gone): %s", type(append.events[0].event).__name__,
                        extra={"adw_id": self._adw_id})  # fmt: skip

    def _signal(self, signum: int) -> None:
        """Signal the run's whole group, even after its leader exited (the
        group's id stays reserved while any member lives)."""
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signum)

    def _later(self, delay: float, message: object) -> None:
        timer = threading.Timer(delay, _tell_quietly, args=(self.actor_ref, message))
        timer.daemon = True
        timer.start()
        self._timers.append(timer)


class _HeartbeatDue(msgspec.Struct, frozen=True):
    """WorkflowActor: time to look whether the run still shows signs of life."""


class _OpenGate(msgspec.Struct, frozen=True):
    """WorkflowActor (after its run_started commits): start the workflow."""


class OutputFailed(msgspec.Struct, frozen=True):
    """WorkflowActor: the run's output could not be written (disk full...)."""

    reason: str


class _ExitBox:
    """The child's exit, filled once by the reader thread, the one reaper."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self.drained = threading.Event()  # the stdout reader reached EOF
        self.returncode: int | None = None

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def set(self, returncode: int) -> None:
        self.returncode = returncode
        self._done.set()

    def wait(self, timeout: float | None) -> bool:
        return self._done.wait(timeout)


def _await_exit(
    proc: subprocess.Popen[bytes], tell: Callable[[object], None], exit_box: _ExitBox
) -> None:
    """Waiter thread, the one reaper: reports the child's exit, always.

    The end does not wait for the end of the output: what the workflow left
    in its group may hold the pipe open for ever. The last lines the child
    wrote get DRAIN_S to arrive first (they usually take microseconds).
    """
    returncode, usage = _wait(proc)
    exit_box.set(returncode)
    exit_box.drained.wait(DRAIN_S)
    with contextlib.suppress(pykka.ActorDeadError):  # stopped at shutdown
        tell(Exited(returncode, usage))


def _pump(
    proc: subprocess.Popen[bytes],
    log_file: IO[bytes],
    tell: Callable[[object], None],
    exit_box: _ExitBox,
) -> None:
    """Reader thread: stdout lines to the log file, progress lines to the actor.

    A log that cannot be written (disk full) ends the run, never the reader.
    """
    assert proc.stdout is not None
    # typeshed types Popen.args as any command form; adwd always spawns an argv list.
    program = cast("list[str]", proc.args)[0]
    writable = True
    try:
        for line in proc.stdout:
            if writable:
                try:
                    log_file.write(line)
                    log_file.flush()
                except OSError as exc:
                    writable = False
                    with contextlib.suppress(pykka.ActorDeadError):
                        tell(OutputFailed(f"{exc.strerror or exc} ({program!s} log)"))
            progress = parse_progress_line(line)
            with contextlib.suppress(pykka.ActorDeadError):
                if progress is not None:
                    tell(progress)
                elif text := line.decode(errors="replace").rstrip():
                    tell(LogLine(line_level(text), text[:2000]))
    finally:
        proc.stdout.close()
        exit_box.drained.set()
        exit_box.wait(None)
        with contextlib.suppress(OSError):
            log_file.write(f"--- adwd: exit code {exit_box.returncode}\n".encode())
        with contextlib.suppress(OSError):
            log_file.close()


def _pump_stderr(
    proc: subprocess.Popen[bytes], log_file: IO[bytes], tell: Callable[[object], None]
) -> None:
    """Reader thread: stderr lines to the log file and, as log lines, to the actor."""
    assert proc.stderr is not None
    with contextlib.ExitStack() as stack:
        stack.enter_context(proc.stderr)
        stack.callback(_close_quietly, log_file)
        writable = True
        for line in proc.stderr:
            if writable:
                try:
                    log_file.write(line)
                    log_file.flush()
                except OSError as exc:
                    writable = False  # the stdout reader reports it (same file)
                    log.warning("run log not writable: %s", exc)
            if text := line.decode(errors="replace").rstrip():
                with contextlib.suppress(pykka.ActorDeadError):
                    tell(LogLine(line_level(text), text[:2000]))


def _close_quietly(file: IO[bytes]) -> None:
    with contextlib.suppress(OSError):
        file.close()


def line_level(text: str) -> LogLevel:
    """INFO, SUCCESS, WARNING or ERROR, from the words a line starts with."""
    head = text.lstrip("[ ").upper()
    if head.startswith(("ERROR", "CRITICAL", "FATAL", "TRACEBACK", "EXCEPTION")):
        return "ERROR"
    if head.startswith(("WARNING", "WARN")):
        return "WARNING"
    if head.startswith(("SUCCESS", "DONE", "OK ", "✅")):
        return "SUCCESS"
    return "INFO"


def _wait(proc: subprocess.Popen[bytes]) -> tuple[int, ResourceUsage | None]:
    """Reap the child with wait4, which also reports what it consumed."""
    try:
        _pid, status, rusage = os.wait4(proc.pid, 0)
    except ChildProcessError:  # not ours to reap (never expected: this is the one reaper)
        return proc.wait(), None
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage_of(rusage)


def _last_output_line(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        text = line.strip()
        if text and not text.startswith(("--- adwd:", "ADW-PROGRESS ")):
            return text[:300]
    return ""


def _tell_quietly(ref: pykka.ActorRef[Any], message: object) -> None:
    with contextlib.suppress(pykka.ActorDeadError):
        ref.tell(message)
