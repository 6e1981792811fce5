#!/usr/bin/env python3
"""Test helper workflow: report progress, then block until a release file appears.

Used by the service's tests to hold a run open (to test cancellation, concurrency limits and
shutdown) and to record when each child ran:

* ``ADW_RELEASE_FILE``: path polled every 0.02 s; the script exits 0 once it exists. If the
  variable is unset the script waits until it is killed.
* ``ADW_TRACE_FILE``: if set, ``start <pid> <monotonic_ns>`` is appended at start and
  ``end <pid> <monotonic_ns>`` just before a normal exit, each with a single ``os.write`` on an
  ``O_APPEND`` descriptor so lines from concurrent children never interleave. A child killed by
  a signal writes no ``end`` line.

* ``ADW_CHATTER_BYTES``: if set, first print about that many bytes of ordinary output lines.
* ``ADW_HELPER_CHILD``: if set to a path, start a helper process in the run's process group
  (as a test suite or a CLI would) and write its pid to that path.
* ``ADW_STUBBORN_CHILD``: the same, with a helper that ignores SIGTERM.

SIGTERM is reset to the default action, so it kills the process even if the parent ignored it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from _adw import progress

POLL_SECONDS = 0.02


def trace(event: str) -> None:
    """Append ``<event> <pid> <monotonic_ns>`` to ADW_TRACE_FILE, if set, in one write."""
    path = os.environ.get("ADW_TRACE_FILE")
    if not path:
        return
    line = f"{event} {os.getpid()} {time.monotonic_ns()}\n".encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


# Helpers a workflow may leave in its group, as a test suite or a CLI would.
HELPERS = {
    "ADW_HELPER_CHILD": "import time; time.sleep(120)",
    "ADW_STUBBORN_CHILD": (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
    ),
}


def start_helper(code: str, pid_file: str) -> None:
    """Start a helper process in this run's group; write its pid to ``pid_file``."""
    quiet = subprocess.DEVNULL  # it must not hold the run's output pipe open
    helper = subprocess.Popen([sys.executable, "-c", code], stdout=quiet, stderr=quiet)
    with open(pid_file + ".tmp", "w") as out:
        out.write(str(helper.pid))
    os.replace(pid_file + ".tmp", pid_file)


def main() -> int:
    """Wait for the release file, tracing start and end; return the exit code."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    trace("start")
    chatter = int(os.environ.get("ADW_CHATTER_BYTES", "0"))
    line = "chatter " + "x" * 120
    for _ in range(chatter // (len(line) + 1)):
        print(line)
    sys.stdout.flush()
    for variable, code in HELPERS.items():
        if path := os.environ.get(variable):
            start_helper(code, path)
    release = os.environ.get("ADW_RELEASE_FILE")
    progress(10, "Stage: sleep", f"Waiting for {release}" if release else "Waiting forever")
    while release is None or not os.path.exists(release):
        time.sleep(POLL_SECONDS)
    progress(100, "Stage: sleep", "Released")
    trace("end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
