"""Kill -9 at random moments, with a prompt reaper as the orphans' parent.

The test process makes itself a child subreaper (as systemd, tini or a
container runtime's init is for a real deployment) and reaps orphans at
once, so a dead workflow leader disappears immediately and only what it
started is left in its group: the case the old leader-based recovery
missed. Invariants after every restart: no process of the dead service's
runs is left, every accepted run ends exactly once, nothing committed is
lost, and no run executed twice.

``ADWD_CRASH_TRIALS`` sets the number of random kill points (default 24;
a stress run: ``ADWD_CRASH_TRIALS=200``), ``ADWD_CRASH_SEED`` their seed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import re
import signal
import subprocess
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adwd.actors.base import CRASH_AFTER_SPAWN
from adwd.actors.processes import group_members
from adwd.events.store import EventStore, StoredEvent
from tests.integration.conftest import TIMEOUT, Client

PR_SET_CHILD_SUBREAPER = 36
TRIALS = int(os.environ.get("ADWD_CRASH_TRIALS", "24"))
Serve = Callable[[Path], tuple[subprocess.Popen[str], int]]


@contextlib.contextmanager
def prompt_reaper(keep: Callable[[], set[int]]) -> Iterator[None]:
    """Adopt orphans (child subreaper) and reap them as soon as they exit,
    except the processes in ``keep()`` (the adwd services, reaped by Popen)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        pytest.skip("prctl(PR_SET_CHILD_SUBREAPER) is not allowed here")
    stop = threading.Event()

    def reap() -> None:
        while not stop.wait(0.002):
            for pid in _children() - keep():
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)

    reaper = threading.Thread(target=reap, daemon=True)
    reaper.start()
    try:
        yield
    finally:
        stop.set()
        reaper.join()
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def _children() -> set[int]:
    """This process's children, from /proc (every thread's list)."""
    pids: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            pids.update(int(p) for p in (task / "children").read_text().split())
    return pids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _events(data: Path) -> list[StoredEvent]:
    store = EventStore(data / "events.db", readonly=True)
    try:
        return list(store.read())
    finally:
        store.close()


def _config(tmp: Path, *, faults: bool = False) -> Path:
    config = tmp / f"adwd-{faults}.toml"
    config.write_text(
        f'data_dir = "{tmp / "data"}"\nport = 0\nmax_concurrent = 2\nshutdown_grace_s = 1.0\n'
        f"fault_injection = {'true' if faults else 'false'}\n"
        "[workflows.adw_sleep]\n"
        f'env = {{ ADW_RELEASE_FILE = "{tmp / "release"}", ADW_TRACE_FILE = "{tmp / "trace"}",'
        f' ADW_STUBBORN_CHILD = "{tmp / "helper.pid"}" }}\n'
    )
    return config


def _starts(tmp: Path) -> Counter[str]:
    """How many times each workflow process really started (the trace file)."""
    trace = tmp / "trace"
    lines = trace.read_text().split() if trace.exists() else []
    return Counter(lines[i + 1] for i in range(0, len(lines), 3) if lines[i] == "start")


def _check_invariants(tmp: Path, before: list[StoredEvent], port: int) -> None:
    """After a restart: nothing lost, every run ends once, nothing ran twice."""
    (tmp / "release").touch()
    watcher = Client(f"ws://127.0.0.1:{port}/ws/trigger?since=0")
    try:
        queued = [e.event.adw_id for e in before if e.type == "run_queued"]  # type: ignore[attr-defined]
        for adw_id in queued:
            watcher.wait_terminal(adw_id)
    finally:
        watcher.close()
    after = _events(tmp / "data")
    assert after[: len(before)] == before  # every committed event is still there
    ends = Counter(
        e.event.adw_id  # type: ignore[attr-defined]
        for e in after
        if e.type in ("run_completed", "run_failed")
    )
    assert all(ends[adw_id] == 1 for adw_id in queued), ends
    started = Counter(e.event.adw_id for e in after if e.type == "run_started")  # type: ignore[attr-defined]
    assert all(n == 1 for n in started.values()), started
    # A workflow process ran at most once per recorded start (the gate held the rest).
    assert sum(_starts(tmp).values()) <= sum(started.values())


def test_kill9_at_random_points_leaves_no_process_and_runs_nothing_twice(
    tmp_path: Path, serve: Serve
) -> None:
    rng = random.Random(int(os.environ.get("ADWD_CRASH_SEED", "7")))
    services: set[int] = set()
    with prompt_reaper(lambda: services):
        for trial in range(TRIALS):
            tmp = tmp_path / f"t{trial}"
            tmp.mkdir()
            proc, port = serve(_config(tmp))
            services.add(proc.pid)
            client = Client(f"ws://127.0.0.1:{port}/ws/trigger")
            try:
                for n in range(3):
                    client.send(
                        {
                            "type": "trigger_workflow",
                            "data": {"workflow_type": "adw_sleep", "adw_id": f"k{trial}r{n}"},
                        }
                    )
                # Somewhere between the first trigger and the runs well under way.
                with contextlib.suppress(TimeoutError):
                    client.wait_for(lambda _m: False, timeout=rng.uniform(0.0, 0.4))
                proc.kill()
                assert proc.wait(timeout=TIMEOUT) == -signal.SIGKILL
            finally:
                client.close()
            before = _events(tmp / "data")
            groups = [e.event.pid for e in before if e.type == "run_started"]  # type: ignore[attr-defined]

            again, port = serve(_config(tmp))
            services.add(again.pid)
            # Recovery ran before the service listened: no process of a dead run is left.
            for pgid in groups:
                assert group_members(pgid) == [], f"trial {trial}: group {pgid} survived"
            orphans = [p for p in _children() - services if _alive(p)]
            assert orphans == [], f"trial {trial}: orphans {orphans}"
            _check_invariants(tmp, before, port)
            again.terminate()
            assert again.wait(timeout=TIMEOUT) == 0


def test_a_crash_between_spawn_and_commit_runs_the_workflow_once(
    tmp_path: Path, serve: Serve
) -> None:
    """The seam kills adwd right after spawning a run's child, before run_started
    commits: the gated child runs nothing; after the restart the run runs once."""
    services: set[int] = set()
    with prompt_reaper(lambda: services):
        proc, port = serve(_config(tmp_path, faults=True))
        services.add(proc.pid)
        client = Client(f"ws://127.0.0.1:{port}/ws/trigger")
        try:
            client.send(
                {
                    "type": "trigger_workflow",
                    "data": {
                        "workflow_type": "adw_sleep",
                        "adw_id": "gated001",
                        "trigger_reason": CRASH_AFTER_SPAWN,
                    },
                }
            )
            assert proc.wait(timeout=TIMEOUT) == -signal.SIGKILL
        finally:
            client.close()
        before = _events(tmp_path / "data")
        assert [e.type for e in before].count("run_started") == 0
        assert _starts(tmp_path) == Counter()  # the gate held it: the workflow never ran

        again, port = serve(_config(tmp_path))  # without the seam: the run goes ahead
        services.add(again.pid)
        _check_invariants(tmp_path, before, port)
        after = _events(tmp_path / "data")
        if any(e.type == "run_queued" for e in before):  # accepted before the crash
            assert [e.type for e in after].count("run_started") == 1
            assert sum(_starts(tmp_path).values()) == 1
        again.terminate()
        assert again.wait(timeout=TIMEOUT) == 0


def test_a_leader_that_exits_leaves_no_helper_behind(tmp_path: Path, serve: Serve) -> None:
    """A workflow that exits 0 while a helper it started (one that ignores SIGTERM
    and holds no output) lives on: the run completes and the helper is stopped."""
    proc, port = serve(_config(tmp_path))
    (tmp_path / "release").touch()
    client = Client(f"ws://127.0.0.1:{port}/ws/trigger")
    try:
        started = client.trigger("adw_sleep", adw_id="leaves01")
        assert started["data"]["status"] == "accepted"
        first = client.wait_for(lambda m: m.get("data", {}).get("status") == "started")
        leader = int(re.search(r"pid (\d+)", first["data"]["message"]).group(1))  # type: ignore[union-attr]
        assert client.wait_terminal("leaves01")["data"]["status"] == "completed"
        assert group_members(leader) == []
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=TIMEOUT)
