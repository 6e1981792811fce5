"""Idle connections: how many a server holds, at what memory, and how fast they connect.

For N in SIZES (1,000 and 5,000), each server runs as its own process so its
memory is its own: adwd as ``adwd serve`` (fresh data directory, port 0) and
the baseline as a bare ``websockets`` server with adwd's ``serve`` settings
that holds every connection and sends nothing
(``python -m bench.connections --serve-bare``). A ``bench.loadgen`` process
opens N connections (64 handshakes in flight at a time) and holds them idle;
SETTLE s later the server's ``VmRSS`` and ``Threads`` are read from
``/proc/<pid>/status``, and the loadgen counts the connections still open.

- memory per connection = (VmRSS with N held - VmRSS before) / N.
  Goal: adwd <= 2x the baseline.
- connect rate = N / seconds from the first handshake to the last.
- held: connections still open after SETTLE. Goal: all 5,000 on this 2-core
  machine.
- threads: adwd starts one pykka ConnectionActor thread per connection.

The file limit is raised to its hard limit for every process. One round per N
(memory figures vary by a few percent). ``ADWD_BENCH_QUICK=1`` makes N 100 and
500; ``ADWD_BENCH_CONNECTIONS=1000,5000`` sets them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from bench.common import print_table, row, write_result
from bench.loadgen import (
    AdwdProcess,
    LoadGen,
    bare_serve_options,
    proc_status,
    quick,
    raise_nofile,
)

SETTLE = 2.0  # s after the last handshake before measuring
START_SETTLE = 1.0  # s after the server is up before the "before" reading


class _BareProcess:
    """The bare server as its own process."""

    def __init__(self) -> None:
        argv = [sys.executable, "-m", "bench.connections", "--serve-bare"]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(os.path.dirname(__file__))
        )
        assert self.proc.stdout is not None
        self.pid = self.proc.pid
        self.port = int(json.loads(self.proc.stdout.readline())["port"])
        self.url = f"ws://127.0.0.1:{self.port}/"

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


async def _hold(ws: ServerConnection) -> None:
    with contextlib.suppress(ConnectionClosed):
        await ws.wait_closed()


async def _serve_bare() -> None:
    server = await serve(_hold, "127.0.0.1", 0, **bare_serve_options())
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    await asyncio.Future()


def _health(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=30) as response:
            return int(json.loads(response.read())["active_connections"])
    except (OSError, ValueError, KeyError):
        return None


def _measure(start: Callable[[], Any], n: int) -> dict[str, Any]:
    server = start()
    try:
        time.sleep(START_SETTLE)
        before = proc_status(server.pid)
        load = LoadGen("hold", server.url, clients=n)
        ready = load.wait("ready", 60 + n / 10)
        time.sleep(SETTLE)
        after = proc_status(server.pid)
        active = _health(server.port) if isinstance(server, AdwdProcess) else None
        load.tell("close")
        result = load.result(120)
    finally:
        server.kill()
    return {
        "n": n,
        "per_s": ready["per_s"],
        "held": result["open"],
        "rss_before_kb": before["VmRSS"],
        "rss_after_kb": after["VmRSS"],
        "kb_per_conn": (after["VmRSS"] - before["VmRSS"]) / n,
        "threads_before": before["Threads"],
        "threads_after": after["Threads"],
        "server_active": active,
    }


def _sizes() -> list[int]:
    value = os.environ.get("ADWD_BENCH_CONNECTIONS")
    if value:
        return [int(v) for v in value.split(",")]
    return [100, 500] if quick() else [1000, 5000]


def run() -> list[dict[str, object]]:
    """Run the connection benchmark for each N; return the table rows."""
    raise_nofile()
    rows: list[dict[str, object]] = []
    for n in _sizes():
        with tempfile.TemporaryDirectory(prefix="adwd-bench-conns-") as tmp:
            adwd = _measure(lambda tmp=tmp: AdwdProcess(tmp), n)
        base = _measure(_BareProcess, n)
        memory = row(f"memory per idle connection, N={n}", adwd["kb_per_conn"],
                     base["kb_per_conn"], "KiB", cost=True, goal=2.0)  # fmt: skip
        memory.update(adwd_detail=adwd, baseline_detail=base)
        held = row(f"idle connections held, N={n}", adwd["held"], base["held"], "conns",
                   cost=False)  # fmt: skip
        held.update(goal=f"all {n}", held=adwd["held"] == n)
        rows += [
            held,
            memory,
            row(f"connect rate, N={n}", adwd["per_s"], base["per_s"], "conn/s", cost=False),
            row(f"server threads, N={n} held", adwd["threads_after"], base["threads_after"],
                "threads", cost=True),
        ]  # fmt: skip
    return rows


def main() -> None:
    """Run, print and save; or, with --serve-bare, be the bare server."""
    parser = argparse.ArgumentParser(prog="python -m bench.connections")
    parser.add_argument("--serve-bare", action="store_true", help="run the bare server")
    args = parser.parse_args()
    if args.serve_bare:
        raise_nofile()
        asyncio.run(_serve_bare())
        return
    rows = run()
    print_table(rows)
    print(f"saved {write_result('connections', rows)}")


if __name__ == "__main__":
    main()
