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
from collections.abc import Callable
from pathlib import Path
from typing import IO

import msgspec
import pykka

from adwd.actors.base import Actor
from adwd.actors.catalogue import LaunchPlan
from adwd.actors.messages import (
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
from adwd.actors.ratelimit import TokenBucket
from adwd.events.domain import (
    ActorFailed,
    DomainEvent,
    ResourceUsage,
    RunCompleted,
    RunFailed,
    RunLogged,
    RunProgress,
    RunQueued,
    RunStarted,
    StageChanged,
    workflow_stream,
)
from adwd.events.store import NewEvent
from adwd.projections.stages import STAGES, next_stage, stage_of

log = logging.getLogger(__name__)

# The gate: wait for "go" on stdin (the gate pipe), give the workflow
# /dev/null as stdin, and become it (same pid). EOF, because adwd died before
# run_started was committed, exits 75 (EX_TEMPFAIL) having run nothing.
GATE = 'IFS= read -r go; exec </dev/null; [ "$go" = go ] || exit 75; exec "$@"'
DRAIN_S = 2.0  # after the child exits, how long its last output may take to arrive


class WorkflowActor(Actor):
    """Runs one workflow run from spawn to its one terminal event."""

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
    ) -> None:
        super().__init__()
        self._crash_after_spawn = crash_after_spawn  # test seam, see CRASH_AFTER_SPAWN
        self._adw_id = adw_id
        self._workflow_type = workflow_type
        self._plan = plan
        self._request = request
        self._log = event_log
        self._scheduler = scheduler
        self._grace_s = grace_s
        self._expected_s = expected_s
        self._stage = card_stage  # where this run's card is now
        self._own_stage = stage_of(workflow_type, "running")
        self._manages_stages = False  # set when the workflow reports a stage of its own
        self._log_bucket = TokenBucket(rate=log_lines_per_s, burst=max(1.0, 5 * log_lines_per_s))
        self._suppressed = 0
        self._principal = principal
        self._correlation_id = correlation_id
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0
        self._progress = 0
        self._stop_reason: str | None = None
        self._cancelled = False
        self._ended = False
        self._timers: list[threading.Timer] = []
        self._exit = _ExitBox()  # the waiter, the one reaper, fills it
        self._gate: int | None = None  # write end of the start gate, until opened

    # -- lifecycle ---------------------------------------------------------

    def on_start(self) -> None:
        """Spawn the child and record RunStarted (or RunFailed if it cannot start)."""
        plan = self._plan
        try:
            Path(plan.work_dir).mkdir(parents=True, exist_ok=True)
            log_path = Path(plan.logs_path)
            log_path.parent.mkdir(parents=True, exist_ok=True)
            # The whole trigger (issue_json, stages, config...) for the workflow to read.
            Path(plan.trigger_file).write_bytes(msgspec.json.encode(self._request))
            log_file = log_path.open("ab")
        except OSError as exc:
            self._end(RunFailed(**self._ids(), reason=f"could not create its log: {exc}"))
            return
        header = f"--- adwd: {' '.join(plan.argv)} (cwd {plan.cwd}) at {time.ctime()}\n"
        log_file.write(header.encode())
        log_file.flush()
        self._started_at = time.monotonic()
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
            os.close(self._gate)
            self._gate = None
            log_file.write(f"--- adwd: could not start: {exc}\n".encode())
            log_file.close()
            self._end(
                RunFailed(
                    **self._ids(),
                    reason=f"could not start {plan.argv[0]!r}: {exc.strerror or exc}"
                    f"{f' ({exc.filename})' if exc.filename else ''}. "
                    "Check the workflow's argv and cwd in the config.",
                )
            )
            return
        finally:
            os.close(gate_in)
        if self._crash_after_spawn:
            os.kill(os.getpid(), signal.SIGKILL)
        me = self.actor_ref
        self._log.tell(
            Append(
                [self._new(RunStarted(
                    **self._ids(),
                    pid=self._proc.pid,
                    argv=plan.argv,
                    cwd=plan.cwd,
                    proc_start=start_ticks(self._proc.pid),
                    expected_s=self._expected_s,
                ))],
                committed=lambda: _tell_quietly(me, _OpenGate()),
            )
        )  # fmt: skip
        log.info(
            "run %s (%s) started: pid %d",
            self._adw_id,
            self._workflow_type,
            self._proc.pid,
            extra={"adw_id": self._adw_id},
        )
        self._move(self._own_stage, f"{self._workflow_type} started")
        # stderr gets its own reader and its own append handle: each writes whole lines.
        threading.Thread(
            target=_pump_stderr,
            args=(self._proc, log_path.open("ab"), self.actor_ref.tell),
            name=f"adw-stderr-{self._adw_id}",
            daemon=True,
        ).start()
        threading.Thread(
            target=_pump,
            args=(self._proc, log_file, self.actor_ref.tell, self._exit),
            name=f"adw-reader-{self._adw_id}",
            daemon=True,
        ).start()
        threading.Thread(
            target=_await_exit,
            args=(self._proc, self.actor_ref.tell, self._exit),
            name=f"adw-waiter-{self._adw_id}",
            daemon=True,
        ).start()
        if plan.timeout_s > 0:
            self._later(plan.timeout_s, Stop(reason=f"timed out after {plan.timeout_s:g} s"))

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
        """Progress, exit, cancel/timeout and the kill after the grace period."""
        if isinstance(message, Progress):
            self._on_progress(message)
        elif isinstance(message, LogLine):
            self._on_log(message)
        elif isinstance(message, StageReport):
            if not self._ended:
                self._reported(message.stage, message.message or f"moved to {message.stage}")
        elif isinstance(message, Exited):
            self._on_exit(message.returncode, message.usage)
        elif isinstance(message, Stop):
            self._on_stop_request(message)
        elif isinstance(message, Kill):
            self._signal(signal.SIGKILL)
        elif isinstance(message, _OpenGate):
            self._open_gate()
        elif isinstance(message, OutputFailed):
            self._on_stop_request(Stop(reason=f"its output could not be written: {message.reason}"))
        return None

    def on_stop(self) -> None:
        """Service shutdown: end the child and record the run as interrupted."""
        for timer in self._timers:
            timer.cancel()
        if self._ended or self._proc is None:
            return
        returncode = self._stop_group()
        self._end(
            RunFailed(
                **self._ids(),
                reason="interrupted: the service shut down while the run was in progress; "
                "trigger it again to re-run it",
                exit_code=returncode,
                duration_s=self._elapsed(),
                progress_percent=self._progress,
                expected_s=self._expected_s,
            ),
            notify=False,
        )

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
        self._append(
            ActorFailed(actor=self.KIND, exception=name, adw_id=self._adw_id, action="run failed")
        )
        if not self._ended:
            self._ended = True
            self._append(
                RunFailed(
                    **self._ids(),
                    reason=f"failed inside adwd ({name} in the run's actor), not in the "
                    "workflow; its processes were stopped. Trigger it again to re-run it",
                    exit_code=returncode,
                    duration_s=self._elapsed(),
                    progress_percent=self._progress,
                    expected_s=self._expected_s,
                )
            )
            self._scheduler.tell(RunEnded(self._adw_id, self._workflow_type, None, self._stage))

    def _close_gate(self) -> None:
        if self._gate is not None:
            os.close(self._gate)  # a gate still waiting exits without running anything
            self._gate = None

    def _open_gate(self) -> None:
        """run_started is committed: let the workflow run."""
        if self._gate is None or self._stop_reason is not None:
            self._close_gate()  # stopped before it started: it runs nothing
            return
        with contextlib.suppress(OSError):  # a gate already gone reads nothing
            os.write(self._gate, b"go\n")
        self._close_gate()

    def _stop_group(self) -> int | None:
        """SIGTERM the run's whole group; SIGKILL what is left of it after the
        grace period; the leader's exit code (reaped by the reader)."""
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

    # -- handlers ----------------------------------------------------------

    def _on_progress(self, message: Progress) -> None:
        if self._ended:
            return
        step = message.current_step or ""
        if step.startswith("Stage: ") and step[7:].strip() in STAGES:
            self._reported(step[7:].strip(), message.message or step)
        if message.progress_percent is not None:
            self._progress = message.progress_percent
        self._append(
            RunProgress(
                **self._ids(),
                progress_percent=self._progress,
                current_step=message.current_step or "",
                message=message.message or "",
            )
        )

    def _on_log(self, line: LogLine) -> None:
        """Boards get the run's lines, at most ``log_lines_per_s`` on average."""
        if self._ended:
            return
        if not self._log_bucket.allow(time.monotonic()):
            self._suppressed += 1
            return
        if self._suppressed:
            self._note_suppressed()
        self._append(
            RunLogged(**self._ids(), level=line.level, message=line.text)  # type: ignore[arg-type]
        )

    def _note_suppressed(self) -> None:
        text = f"{self._suppressed} lines not shown (rate limit); all are in {self._plan.logs_path}"
        self._suppressed = 0
        self._append(RunLogged(**self._ids(), level="WARNING", message=text))

    def _reported(self, stage: str, message: str) -> None:
        """The workflow moved its card itself; one that manages its own stages is
        not moved onwards when it completes."""
        if stage != self._own_stage:
            self._manages_stages = True
        self._move(stage, message)

    def _move(self, stage: str, message: str) -> None:
        """Move this run's card, recording the transition."""
        if stage == self._stage:
            return
        self._append(
            StageChanged(**self._ids(), from_stage=self._stage, to_stage=stage, message=message)
        )
        self._stage = stage

    def _on_exit(self, returncode: int, usage: ResourceUsage | None) -> None:
        if self._ended:
            return
        if self._proc is not None and group_alive(self._proc.pid):
            # The workflow is done; what it left in its group (a server, a test
            # runner) is not: a run's end means its processes are gone.
            self._stop_group()
        measured = {
            "duration_s": self._elapsed(),
            "resource_usage": usage,
            "expected_s": self._expected_s,
        }
        event: DomainEvent
        if self._stop_reason is not None:
            event = RunFailed(
                **self._ids(),
                **measured,
                reason=self._stop_reason,
                exit_code=returncode,
                cancelled=self._cancelled,
                progress_percent=self._progress,
            )
        elif returncode == 0:
            event = RunCompleted(**self._ids(), **measured)
        else:
            event = RunFailed(
                **self._ids(),
                **measured,
                reason=_exit_reason(returncode, self._plan.logs_path),
                exit_code=returncode,
                progress_percent=self._progress,
            )
        self._end(event)

    def _on_stop_request(self, message: Stop) -> None:
        if self._ended or self._stop_reason is not None:
            return
        self._stop_reason = message.reason
        self._cancelled = message.cancelled
        self._signal(signal.SIGTERM)
        self._later(self._grace_s, Kill())

    # -- helpers -----------------------------------------------------------

    def _ids(self) -> dict[str, str]:
        return {"adw_id": self._adw_id, "workflow_type": self._workflow_type}

    def _elapsed(self) -> float:
        return round(time.monotonic() - self._started_at, 6) if self._started_at else 0.0

    def _new(self, event: DomainEvent) -> NewEvent:
        return NewEvent(workflow_stream(self._adw_id), event, self._principal, self._correlation_id)

    def _append(self, event: DomainEvent) -> None:
        self._log.tell(Append([self._new(event)]))

    def _end(self, event: DomainEvent, *, notify: bool = True) -> None:
        """Record the one terminal event (and where the card goes) and free the slot."""
        if self._suppressed:
            self._note_suppressed()
        # The card moves first, so the terminal status and metrics stay the run's last words.
        if isinstance(event, RunCompleted) and not self._manages_stages:
            self._move(next_stage(self._stage), f"{self._workflow_type} completed")
        elif isinstance(event, RunFailed):
            self._move("errored", event.reason)
        self._ended = True
        self._close_gate()
        for timer in self._timers:
            timer.cancel()
        self._append(event)
        outcome = f"failed: {event.reason}" if isinstance(event, RunFailed) else "completed"
        log.info(
            "run %s (%s) %s",
            self._adw_id,
            self._workflow_type,
            outcome,
            extra={"adw_id": self._adw_id},
        )
        if notify:
            took = event.duration_s if isinstance(event, RunCompleted) else None
            self._scheduler.tell(RunEnded(self._adw_id, self._workflow_type, took, self._stage))
            self.actor_ref.stop(block=False)

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
                        tell(OutputFailed(f"{exc.strerror or exc} ({proc.args[0]!s} log)"))
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


def line_level(text: str) -> str:
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


def _exit_reason(returncode: int, logs_path: str) -> str:
    """A person-readable reason: the exit status and the last line of output."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        reason = f"killed by {name}"
    else:
        reason = f"exited with code {returncode}"
    last = _last_output_line(logs_path)
    return f"{reason}: {last}" if last else reason


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


def _tell_quietly(ref: pykka.ActorRef[pykka.Actor], message: object) -> None:
    with contextlib.suppress(pykka.ActorDeadError):
        ref.tell(message)
