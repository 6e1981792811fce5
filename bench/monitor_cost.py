"""What monitoring costs: the idle service's CPU with monitoring on against off.

``adwd serve`` runs as its own process (so its CPU time is its own) with the
default settings, monitoring on (``[monitor] enabled = true``: a sample every
5 s, health_status to every connection every 30 s, connection_quality every
60 s) or off. CONNECTIONS clients (100) connect from this process, follow
every run and stay idle (they answer keepalive pings). After a settling
second, the service's user+system CPU time over SECONDS (60) is read from
/proc (psutil) and reported as a share of one core. Rounds alternate on and
off (3 each; 1 in quick mode); each figure is the median.

Goal (issue 12): monitoring adds at most 2% of a core at the default
interval. The ratio on/off is printed like every other row; the extra share
is the figure docs/performance.md quotes.
``ADWD_BENCH_QUICK=1``; ``ADWD_BENCH_MONITOR_CONNECTIONS``, ``..._MONITOR_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
from websockets.asyncio.client import connect

from bench.common import median, print_table, row, write_result
from bench.loadgen import raise_nofile, rounds, setting

GOAL_PERCENT = 2.0  # of one core, added by monitoring at the default interval


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def _service(tmp: Path, *, monitoring: bool) -> Iterator[tuple[psutil.Process, int]]:
    port = _free_port()
    config = tmp / "adwd.toml"
    config.write_text(
        f'port = {port}\ndata_dir = "{tmp / "data"}"\n\n[monitor]\n'
        f"enabled = {'true' if monitoring else 'false'}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "adwd", "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:  # listening: the port accepts
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("adwd serve did not start; run it by hand to see why")
            time.sleep(0.05)
        yield psutil.Process(proc.pid), port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def _idle(port: int, connections: int, seconds: float, service: psutil.Process) -> float:
    """Open the connections, let them settle, return the service's CPU share over ``seconds``."""
    url = f"ws://127.0.0.1:{port}/ws/trigger"
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(connect(url)) for _ in range(connections)]

        async def drain(ws: object) -> None:
            with contextlib.suppress(Exception):
                async for _ in ws:  # type: ignore[attr-defined]
                    pass

        readers = [asyncio.create_task(drain(ws)) for ws in clients]
        await asyncio.sleep(1.0)  # catch-ups done, first samples taken
        before = service.cpu_times()
        start = time.monotonic()
        await asyncio.sleep(seconds)
        after = service.cpu_times()
        elapsed = time.monotonic() - start
        for task in readers:
            task.cancel()
    used = (after.user - before.user) + (after.system - before.system)
    return 100.0 * used / elapsed


def run() -> list[dict[str, object]]:
    """Median CPU share with monitoring on and off."""
    raise_nofile()
    connections = int(setting("monitor_connections", 100, 100))
    seconds = setting("monitor_seconds", 60, 10)
    shares: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds()):
        for monitoring in (False, True):
            with (
                tempfile.TemporaryDirectory() as tmp,
                _service(Path(tmp), monitoring=monitoring) as (service, port),
            ):
                shares[monitoring].append(asyncio.run(_idle(port, connections, seconds, service)))
    on, off = median(shares[True]), median(shares[False])
    print(f"CPU share, % of a core: on {shares[True]}, off {shares[False]}", flush=True)
    # CPU time is counted in clock ticks (10 ms): an idle service may show none at all.
    floor = 100.0 * 0.01 / seconds
    return [
        row(
            f"idle, {connections} connections: CPU, monitoring on vs off",
            max(on, floor),
            max(off, floor),
            "% core",
            cost=True,
        )
        | {"extra_percent_of_core": on - off, "goal_extra_percent": GOAL_PERCENT}
    ]


if __name__ == "__main__":
    result = run()
    write_result("monitor_cost", result)
    print_table(result)
    extra = result[0]["extra_percent_of_core"]
    print(f"monitoring adds {extra:.2f}% of a core (goal <= {GOAL_PERCENT:g}%)")
