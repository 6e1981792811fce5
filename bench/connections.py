"""Idle connections: how many a server holds, at what memory, and how fast they connect.

For N in SIZES (1,000, 5,000 and 20,000), each server runs as its own process
so its memory is its own: adwd as ``adwd serve`` (fresh data directory, port
0) and the baseline as a bare ``websockets`` server with adwd's ``serve``
settings that holds every connection and sends nothing
(``python -m bench.connections --serve-bare``). A ``bench.loadgen`` process
opens N connections (64 handshakes in flight at a time) and holds them idle;
SETTLE s later the server's ``VmRSS`` and ``Threads`` are read from
``/proc/<pid>/status``, and the loadgen counts the connections still open.

- memory per connection = (VmRSS with N held - VmRSS before) / N.
  Goal: adwd <= 1.5x the baseline.
- connect rate = N / seconds from the first handshake to the last.
  Goal: adwd >= 0.6x the baseline's rate.
- held: connections still open after SETTLE. Goal: all N.
- threads: adwd runs every ConnectionActor on ``connection_threads`` shared
  dispatcher threads, so its count should not grow with N.

The file limit is raised to its hard limit for every process. Each side needs
N sockets plus a few files of its own (adwd ~15 idle, more while catch-ups
read the log), so an N above ``hard limit - FD_HEADROOM`` is lowered to that
and the row says so: with the hard limit at 20,000 (and no
``CAP_SYS_RESOURCE`` to raise it), "20,000" runs as 19,900. One round per N
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
import threading
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
# Files each side keeps besides its N sockets: stdio, epoll, the listening socket,
# adwd's log and views databases (13 idle), and adwd's pool of catch-up readers,
# two files each (events.db and its WAL), one per catch-up in flight at its busiest:
# 127 readers (254 files) while 19,736 clients connected, 64 handshakes at a time.
FD_HEADROOM = 500
MEMORY_GOAL = 1.5  # adwd's KiB per connection over the bare server's
RATE_GOAL = 0.6  # adwd's connect rate as a share of the bare server's


class _BareProcess:
    """The bare server as its own process; with ``echo`` it also answers JSON pings."""

    def __init__(self, *, echo: bool = False) -> None:
        argv = [sys.executable, "-m", "bench.connections", "--serve-bare"]
        if echo:
            argv.append("--echo")
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


async def _echo(ws: ServerConnection) -> None:
    """Answer each JSON ping as adwd does: a ``pong`` with the server's clock and the
    ping's ``request_id`` (decoding it, as adwd must, keeps the comparison fair)."""
    with contextlib.suppress(ConnectionClosed):
        async for frame in ws:
            ping = json.loads(frame)
            pong = {"type": "pong", "timestamp": int(time.time() * 1000)}
            if "request_id" in ping:
                pong["request_id"] = ping["request_id"]
            await ws.send(json.dumps(pong))


async def _serve_bare(echo: bool) -> None:
    server = await serve(_echo if echo else _hold, "127.0.0.1", 0, **bare_serve_options())
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    await asyncio.Future()


def _health(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=30) as response:
            return int(json.loads(response.read())["active_connections"])
    except (OSError, ValueError, KeyError):
        return None


def _wait_ready(load: LoadGen, pid: int, timeout: float) -> dict[str, Any]:
    """The loadgen's ``ready``; fail at once if the server runs out of files, where the
    clients would otherwise retry their handshakes for minutes."""
    limit = raise_nofile()
    full, done = threading.Event(), threading.Event()

    def watch() -> None:
        while not done.wait(2.0):
            with contextlib.suppress(OSError):
                if len(os.listdir(f"/proc/{pid}/fd")) >= limit:
                    full.set()
                    load.kill()
                    return

    threading.Thread(target=watch, daemon=True).start()
    try:
        return load.wait("ready", timeout)
    except RuntimeError:
        if full.is_set():
            raise RuntimeError(f"the server ran out of files (limit {limit})") from None
        raise
    finally:
        done.set()


def _measure(start: Callable[[], Any], n: int) -> dict[str, Any]:
    server = start()
    try:
        time.sleep(START_SETTLE)
        before = proc_status(server.pid)
        load = LoadGen("hold", server.url, clients=n)
        ready = _wait_ready(load, server.pid, 60 + n / 10)
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
    return [100, 500] if quick() else [1000, 5000, 20000]


def fitting(n: int, hard_limit: int) -> int:
    """The N that fits under the file limit on both sides (server and loadgen)."""
    return min(n, hard_limit - FD_HEADROOM)


def rate_row(label: str, adwd: float, bare: float) -> dict[str, object]:
    """A connect-rate row whose goal is adwd >= RATE_GOAL x the bare rate."""
    rate = row(label, adwd, bare, "conn/s", cost=False, goal=1 / RATE_GOAL)
    rate["goal"] = f">= {RATE_GOAL:g}x rate"
    return rate


def run() -> list[dict[str, object]]:
    """Run the connection benchmark for each N; return the table rows."""
    hard = raise_nofile()
    rows: list[dict[str, object]] = []
    for asked in _sizes():
        n = fitting(asked, hard)
        label = f"N={n}"
        if n != asked:
            label = f"N={n} ({asked} asked, file limit {hard})"
            print(f"connections: N={asked} needs more than the file limit {hard}; running {n}")
        with tempfile.TemporaryDirectory(prefix="adwd-bench-conns-") as tmp:
            adwd = _measure(lambda tmp=tmp: AdwdProcess(tmp), n)
        base = _measure(_BareProcess, n)
        memory = row(f"memory per idle connection, {label}", adwd["kb_per_conn"],
                     base["kb_per_conn"], "KiB", cost=True, goal=MEMORY_GOAL)  # fmt: skip
        memory.update(adwd_detail=adwd, baseline_detail=base, asked=asked, nofile=hard)
        held = row(f"idle connections held, {label}", adwd["held"], base["held"], "conns",
                   cost=False)  # fmt: skip
        held.update(goal=f"all {n}", held=adwd["held"] == n)
        rows += [
            held,
            memory,
            rate_row(f"connect rate, {label}", adwd["per_s"], base["per_s"]),
            row(f"server threads, {label} held", adwd["threads_after"], base["threads_after"],
                "threads", cost=True),
        ]  # fmt: skip
    return rows


def main() -> None:
    """Run, print and save; or, with --serve-bare, be the bare server."""
    parser = argparse.ArgumentParser(prog="python -m bench.connections")
    parser.add_argument("--serve-bare", action="store_true", help="run the bare server")
    parser.add_argument("--echo", action="store_true", help="bare server: answer JSON pings")
    args = parser.parse_args()
    if args.serve_bare:
        raise_nofile()
        asyncio.run(_serve_bare(args.echo))
        return
    rows = run()
    print_table(rows)
    print(f"saved {write_result('connections', rows)}")


if __name__ == "__main__":
    main()
