"""Child processes: identity across restarts, resource usage, stopping a group.

Linux-specific where it must be (``/proc``); elsewhere identity checks
degrade to "pid alive", which is documented.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import time
from pathlib import Path

from adwd.events.domain import ResourceUsage

BLOCK = 512  # rusage counts block I/O in 512-byte units


def start_ticks(pid: int) -> int:
    """When ``pid`` started, in clock ticks since boot; 0 if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    # Field 22; the command name (field 2) may hold spaces, so split after it.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19])


def is_same_process(pid: int, ticks: int) -> bool:
    """Whether ``pid`` is still the process that started at ``ticks``.

    An unknown start time (0) is never taken as a match: the pid may have been
    reused by a process that is not ours, and it must not be signalled.
    """
    if pid <= 0 or ticks == 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # not ours: never signal it
    return start_ticks(pid) == ticks


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of group ``pgid``, from /proc.

    A group outlives its leader: what the leader started (a test suite, a
    CLI) stays in the group after the leader exits, so "is the run still
    there" is a question about the group, never about the leader. Zombies are
    gone already (they only wait for their parent to reap them).
    """
    members = []
    try:
        entries = os.listdir("/proc")
    except OSError:  # no /proc: fall back to the kernel's answer for the group
        return [pgid] if _killpg_alive(pgid) else []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # gone meanwhile
        fields = stat.rsplit(")", 1)[1].split()
        # fields[0] is the state (field 3), fields[2] the process group (field 5).
        if fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


def group_alive(pgid: int) -> bool:
    """Whether any process of the group is still there (zombies count as gone)."""
    return _killpg_alive(pgid) and bool(group_members(pgid))


def _killpg_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def stop_groups(pgids: list[int], grace_s: float) -> dict[int, str]:
    """Stop several groups at once: SIGTERM to each, then one wait for all of
    them, then SIGKILL to what is left after ``grace_s``. So a restart waits
    one grace period at most, not one per interrupted run. Returns the last
    signal each group was sent."""
    sent = dict.fromkeys(pgids, "SIGTERM")
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    left = [pgid for pgid in pgids if group_alive(pgid)]
    while left and time.monotonic() < deadline:
        for pgid in left:
            _reap(pgid)
        time.sleep(0.01)  # polling processes we do not parent: no wait() is possible
        left = [pgid for pgid in left if group_alive(pgid)]
    for pgid in left:
        sent[pgid] = "SIGKILL"
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        _reap(pgid)
    return sent


def _reap(pgid: int) -> None:
    # Only our own children can be reaped; for orphans adopted by init this is a no-op.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(-pgid, os.WNOHANG)


def usage_of(rusage: resource.struct_rusage) -> ResourceUsage:
    """A ResourceUsage from the struct_rusage ``os.wait4`` returns."""
    return ResourceUsage(
        cpu_user_s=round(float(rusage.ru_utime), 6),
        cpu_system_s=round(float(rusage.ru_stime), 6),
        max_rss_kb=int(rusage.ru_maxrss),
        read_bytes=int(rusage.ru_inblock) * BLOCK,
        write_bytes=int(rusage.ru_oublock) * BLOCK,
    )
