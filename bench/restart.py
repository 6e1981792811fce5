"""Restart after kill -9: how long until adwd listens again.

A clean start (a fresh data directory) is the baseline. The measured case:
a service with two runs in flight (each run's workflow has started a helper
process of its own) is killed with SIGKILL, and a new ``adwd serve`` on the
same data directory must first stop the interrupted runs' process groups
and record them as failed. The figure is the time from starting the process
to its ``adwd: serving`` line, which it prints once it listens. Goal: within
0.5 s after the kill, and the ratio to a clean start.

``python -m bench.restart``; ``ADWD_BENCH_ROUNDS`` rounds (default 3).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import drain, median, print_table, row, write_result

ROUNDS = int(os.environ.get("ADWD_BENCH_ROUNDS", "3"))
SERVING = re.compile(r"serving ws://127\.0\.0\.1:(\d+)/")


def _config(tmp: Path) -> Path:
    config = tmp / "adwd.toml"
    config.write_text(
        f'data_dir = "{tmp / "data"}"\nport = 0\nmax_concurrent = 2\n'
        "[workflows.adw_sleep]\n"
        f'env = {{ ADW_HELPER_CHILD = "{tmp / "helper"}" }}\n'
    )
    return config


def _serve(config: Path) -> tuple[subprocess.Popen[str], int, float]:
    """Start ``adwd serve``; its port and the seconds until it listened."""
    began = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "adwd", "serve", "--config", str(config)],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        found = SERVING.search(line)
        if found:
            drain(proc.stderr)
            return proc, int(found.group(1)), time.perf_counter() - began
    raise RuntimeError(f"adwd serve exited with {proc.wait()} before listening")


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.wait(timeout=30)
    if proc.stderr is not None:
        proc.stderr.close()


def _two_runs_in_flight(port: int) -> None:
    from websockets.sync.client import connect

    with connect(f"ws://127.0.0.1:{port}/ws/trigger") as ws:
        for n in range(2):
            data = {"workflow_type": "adw_sleep", "adw_id": f"restart{n}"}
            ws.send(json.dumps({"type": "trigger_workflow", "data": data}))
        running = 0
        while running < 2:  # both runs' workflows reported progress: they are running
            if '"status":"running"' in str(ws.recv(timeout=30)):
                running += 1


def measure_round() -> tuple[float, float]:
    """One clean start and one restart after kill -9; seconds until listening."""
    with tempfile.TemporaryDirectory() as clean_dir:
        proc, _, clean = _serve(_config(Path(clean_dir)))
        _stop(proc)
    with tempfile.TemporaryDirectory() as crash_dir:
        config = _config(Path(crash_dir))
        proc, port, _ = _serve(config)
        try:
            _two_runs_in_flight(port)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
        again, _, restart = _serve(config)
        _stop(again)
    return clean, restart


def run() -> list[dict[str, object]]:
    """Measure; return the rows of the suite's table."""
    rounds = [measure_round() for _ in range(ROUNDS)]
    clean = median([c for c, _ in rounds])
    restart = median([r for _, r in rounds])
    return [
        row("listening again after kill -9, 2 runs in flight", restart, clean, "s", cost=True),
        {
            "benchmark": "restart after kill -9, absolute",
            "adwd": restart,
            "baseline": 0.5,
            "unit": "s",
            "ratio": restart / 0.5,
            "goal": "<= 0.5 s",
            "held": restart <= 0.5,
        },
    ]


def main() -> None:
    """Run and print the table."""
    rows = run()
    write_result("restart", rows)
    print_table(rows)


if __name__ == "__main__":
    main()
