"""Connection bursts: what CLIENTS connections arriving and leaving at once do to a
client already connected, and whether the server gives their memory back.

Each server runs as its own process: adwd as ``adwd serve`` (fresh data
directory), the baseline as the bare ``websockets`` server of
``bench.connections`` (adwd's ``serve`` settings) answering JSON pings
(``python -m bench.connections --serve-bare --echo``). Two client processes:

- the observer (``python -m bench.burst observe``): one connection that sends
  ``{"type": "ping", "request_id": ...}`` every INTERVAL s on a fixed
  schedule, whatever is still unanswered (so a stall shows as the delay of
  every ping it holds up, not as one slow round trip), and times each
  ``pong`` carrying its ``request_id``;
- the burst (``python -m bench.burst burst``): on command, opens CLIENTS
  connections as fast as one client process can (64 handshakes in flight, as
  ``bench.connections``; no pause between them), holds them HOLD s, then
  closes them all at once (close handshakes, all concurrent).

Timeline per server: BEFORE s of observer pings alone, then REPEATS bursts
one after another, each followed by SETTLE s of quiet. The observer's round
trips are split by when the ping was sent: *before* (the first BEFORE s),
*during* (from the first connect of a burst to its last close, all bursts
pooled) and *after* (each burst's SETTLE s, pooled). Goal: p99 during the
burst, adwd <= 2x the bare server's.

Memory: the server's ``VmRSS`` (``/proc/<pid>/status``) before the first
burst, its peak during each burst (sampled every SAMPLE s), and SETTLE s after
each burst closed. Goal: adwd's RSS after a burst within 10% of before
(the row's "baseline" column there is adwd's own RSS before).

Figures are medians over ``rounds()`` rounds (3; ``ADWD_BENCH_ROUNDS``),
each with fresh server processes. ``ADWD_BENCH_BURST_CLIENTS`` sets CLIENTS;
``ADWD_BENCH_QUICK=1`` makes it 300.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection

from bench.common import median, percentile, print_table, row, write_result
from bench.connections import _BareProcess, _health
from bench.loadgen import (
    _REPO,
    CONNECT_CONCURRENCY,
    AdwdProcess,
    LoadGen,
    _drain,
    _emit,
    _open,
    raise_nofile,
    rounds,
    setting,
)

INTERVAL = 0.02  # s between the observer's pings
BEFORE = 4.0  # s of observer pings before the first burst
HOLD = 3.0  # s the burst's connections stay open
SETTLE = 2.0  # s after a burst closed before the "after" reading
REPEATS = 3  # bursts in a row on one server
SAMPLE = 0.05  # s between RSS samples
START_SETTLE = 1.0  # s after the server is up before the observer connects
RSS_GOAL = 1.10  # adwd's RSS after a burst over its RSS before


class _Server(Protocol):
    pid: int
    port: int

    @property
    def url(self) -> str: ...

    def kill(self) -> None: ...


# -- client processes ---------------------------------------------------------------


class _Child(LoadGen):
    """A ``bench.burst`` client process, driven through LoadGen's JSON lines and stdin."""

    def __init__(self, mode: str, url: str, **options: object) -> None:
        # LoadGen's own __init__ starts ``bench.loadgen``: the same plumbing, this module.
        argv = [sys.executable, "-m", "bench.burst", mode, "--url", url]
        for key, value in options.items():
            argv += ["--" + key.replace("_", "-"), str(value)]
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=_REPO
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()


async def _command() -> str:
    """The next line on stdin ("" at EOF), read off the loop."""
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return line.strip()


async def _observe(args: argparse.Namespace) -> dict[str, Any]:
    """Ping every ``interval`` s until told to stop; every ping's send time and round trip."""
    ws = await _open(args.url)
    sent: dict[str, float] = {}
    rtts: dict[str, float] = {}
    first = asyncio.get_running_loop().create_future()

    async def read() -> None:
        with contextlib.suppress(Exception):
            async for frame in ws:
                now = time.monotonic()
                msg = json.loads(frame)
                rid = msg.get("request_id")
                if msg.get("type") == "pong" and rid in sent:
                    rtts[rid] = now - sent[rid]
                    if not first.done():
                        first.set_result(None)

    reader = asyncio.create_task(read())
    ids = (f"o{i}" for i in itertools.count())

    async def ping() -> None:
        rid = next(ids)
        sent[rid] = time.monotonic()
        # Returns at once unless the socket's buffer is full, which a few
        # 40-byte pings never make it.
        await ws.send(json.dumps({"type": "ping", "request_id": rid}))

    await ping()
    await asyncio.wait_for(first, 30)  # connected and caught up: measuring from here
    sent.clear()
    rtts.clear()
    _emit("ready")
    stop = asyncio.create_task(_command())
    due = time.monotonic()
    while not stop.done():
        await ping()
        due += args.interval
        await asyncio.wait([stop], timeout=max(0.0, due - time.monotonic()))
    await asyncio.sleep(1.0)  # the last pings' pongs
    reader.cancel()
    return {"samples": [[t, rtts.get(rid)] for rid, t in sent.items()]}


async def _burst(args: argparse.Namespace) -> dict[str, Any]:
    """On "open": connect ``clients``; on "close": close them all; at EOF or "exit": end."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)  # the listen backlog is 100

    async def one() -> ClientConnection:
        async with gate:
            return await _open(args.url)

    conns: list[ClientConnection] = []
    drains: list[asyncio.Task[None]] = []
    bursts = 0
    _emit("ready")
    while (command := await _command()) in ("open", "close"):
        start = time.monotonic()
        if command == "open":
            opening = (one() for _ in range(args.clients))
            got = await asyncio.gather(*opening, return_exceptions=True)
            conns = [ws for ws in got if isinstance(ws, ClientConnection)]
            drains = [asyncio.create_task(_drain(ws)) for ws in conns]
            end = time.monotonic()
            _emit("opened", start=start, end=end, open=len(conns),
                  failed=len(got) - len(conns), per_s=len(conns) / (end - start))  # fmt: skip
        else:
            await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
            for task in drains:
                task.cancel()
            _emit("closed", start=start, end=time.monotonic(), closed=len(conns))
            conns, drains = [], []
            bursts += 1
    return {"bursts": bursts}


# -- the benchmark --------------------------------------------------------------------


class _RssSampler:
    """Samples a process's VmRSS every SAMPLE s in a thread; the peak since the last reset."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._peak = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE):
            with contextlib.suppress(OSError):
                rss = status(self._pid)["VmRSS"]
                with self._lock:
                    self._peak = max(self._peak, rss)

    def reset(self) -> None:
        """Forget the peak so far."""
        with self._lock:
            self._peak = status(self._pid)["VmRSS"]

    def peak(self) -> int:
        """The highest VmRSS (KiB) sampled since the last reset."""
        with self._lock:
            return max(self._peak, status(self._pid)["VmRSS"])

    def stop(self) -> None:
        """End the thread."""
        self._stop.set()
        self._thread.join()


def status(pid: int) -> dict[str, int]:
    """The KiB and counts of /proc/<pid>/status we report (VmRSS, VmHWM, RssAnon, Threads)."""
    found = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "Threads"):
                found[key] = int(value.split()[0])
    return found


def _measure(start: Callable[[], _Server], clients: int) -> dict[str, Any]:
    """One server: BEFORE s quiet, REPEATS bursts; the observer's samples and the RSS."""
    server = start()
    observer: _Child | None = None
    load: _Child | None = None
    sampler: _RssSampler | None = None
    timeout = 60 + clients / 20
    try:
        time.sleep(START_SETTLE)
        sampler = _RssSampler(server.pid)
        observer = _Child("observe", server.url, interval=INTERVAL)
        load = _Child("burst", server.url, clients=clients)
        observer.wait("ready", 60)
        load.wait("ready", 60)  # started: its imports are not part of "before"
        quiet_from = time.monotonic()
        time.sleep(BEFORE)
        before = status(server.pid)
        bursts = []
        for _ in range(REPEATS):
            sampler.reset()
            load.tell("open")
            opened = load.wait("opened", timeout)
            held = status(server.pid)
            time.sleep(HOLD)
            load.tell("close")
            closed = load.wait("closed", timeout)
            time.sleep(SETTLE)
            settled = time.monotonic()
            after = status(server.pid)
            bursts.append({
                "opened": opened, "closed": closed, "settled": settled, "rss_held_kb":
                held["VmRSS"], "rss_peak_kb": sampler.peak(), "rss_after_kb": after["VmRSS"],
                "rss_anon_after_kb": after["RssAnon"], "threads_held": held["Threads"],
                "threads_after": after["Threads"],
                "active_after": _health(server.port) if isinstance(server, AdwdProcess) else None,
            })  # fmt: skip
        load.tell("exit")
        load.result(30)
        observer.tell("stop")
        samples = observer.result(30)["samples"]
    finally:
        for child in (observer, load):
            if child is not None:
                child.kill()
        if sampler is not None:
            sampler.stop()
        server.kill()
    return _summary(samples, quiet_from, before, bursts)


def _rtts(samples: list[list[Any]], spans: list[tuple[float, float]]) -> list[float]:
    """Round trips of the pings sent within any of the spans; an unanswered one counts as
    infinitely slow (it sorts last)."""
    return [
        float("inf") if rtt is None else rtt
        for t, rtt in samples
        if any(lo <= t < hi for lo, hi in spans)
    ]


def _summary(
    samples: list[list[Any]], quiet_from: float, before: dict[str, int], bursts: list[Any]
) -> dict[str, Any]:
    first_open = bursts[0]["opened"]["start"]
    windows = {
        "before": [(quiet_from, first_open)],
        "during": [(b["opened"]["start"], b["closed"]["end"]) for b in bursts],
        "connecting": [(b["opened"]["start"], b["opened"]["end"]) for b in bursts],
        "closing": [(b["closed"]["start"], b["closed"]["end"]) for b in bursts],
        "after": [(b["closed"]["end"], b["settled"]) for b in bursts],
    }
    pings: dict[str, Any] = {}
    for name, spans in windows.items():
        rtts = _rtts(samples, spans)
        pings[name] = {
            "pings": len(rtts),
            "unanswered": sum(r == float("inf") for r in rtts),
            "p50_s": percentile(rtts, 50) if rtts else None,
            "p99_s": percentile(rtts, 99) if rtts else None,
            "max_s": max(rtts) if rtts else None,
        }
    return {
        "pings": pings,
        "rss_before_kb": before["VmRSS"],
        "rss_anon_before_kb": before["RssAnon"],
        "threads_before": before["Threads"],
        "bursts": [
            {
                "connect_per_s": b["opened"]["per_s"],
                "open": b["opened"]["open"],
                "failed": b["opened"]["failed"],
                "connect_s": b["opened"]["end"] - b["opened"]["start"],
                "close_s": b["closed"]["end"] - b["closed"]["start"],
                **{k: v for k, v in b.items() if k not in ("opened", "closed", "settled")},
            }
            for b in bursts
        ],
    }


def run() -> list[dict[str, object]]:
    """Run the burst benchmark against adwd and the bare server; return the table rows."""
    raise_nofile()
    clients = int(setting("burst_clients", 3000, 300))
    adwd_runs: list[dict[str, Any]] = []
    bare_runs: list[dict[str, Any]] = []
    for _ in range(rounds()):
        with tempfile.TemporaryDirectory(prefix="adwd-bench-burst-") as tmp:
            adwd_runs.append(_measure(lambda tmp=tmp: AdwdProcess(tmp), clients))
        bare_runs.append(_measure(lambda: _BareProcess(echo=True), clients))

    def med(runs: list[dict[str, Any]], get: Callable[[dict[str, Any]], float]) -> float:
        return median([get(r) for r in runs])

    def both(get: Callable[[dict[str, Any]], float]) -> tuple[float, float]:
        return med(adwd_runs, get), med(bare_runs, get)

    ms, mib = 1e3, 1 / 1024
    label = f"burst of {clients} conns"
    rows: list[dict[str, object]] = []
    for window in ("before", "during", "after"):
        for p in ("p50", "p99"):
            a, b = both(lambda r, w=window, p=p: r["pings"][w][f"{p}_s"])
            goal = 2.0 if (window, p) == ("during", "p99") else None
            rows.append(row(f"{label}: observer ping {p} {window}", a * ms, b * ms, "ms",
                            cost=True, goal=goal))  # fmt: skip
    a, b = both(lambda r: r["bursts"][0]["connect_per_s"])
    rows.append(row(f"{label}: connect rate (burst 1)", a, b, "conn/s", cost=False))
    a, b = both(lambda r: r["rss_before_kb"])
    rows.append(row(f"{label}: server RSS before", a * mib, b * mib, "MiB", cost=True))
    for k in range(REPEATS):
        a, b = both(lambda r, k=k: r["bursts"][k]["rss_peak_kb"])
        rows.append(row(f"{label}: server RSS peak, burst {k + 1}", a * mib, b * mib, "MiB",
                        cost=True))  # fmt: skip
        a, b = both(lambda r, k=k: r["bursts"][k]["rss_after_kb"])
        rows.append(row(f"{label}: server RSS {SETTLE:g} s after burst {k + 1} closed",
                        a * mib, b * mib, "MiB", cost=True))  # fmt: skip
    for k in (0, REPEATS - 1):
        after = med(adwd_runs, lambda r, k=k: r["bursts"][k]["rss_after_kb"])
        before = med(adwd_runs, lambda r: r["rss_before_kb"])
        rows.append(row(f"{label}: adwd RSS after burst {k + 1} / adwd RSS before "
                        "(baseline column: adwd before)", after * mib, before * mib, "MiB",
                        cost=True, goal=RSS_GOAL))  # fmt: skip
    rows[-1].update(adwd_detail=adwd_runs, baseline_detail=bare_runs)
    return rows


def main() -> None:
    """Run, print and save; or be one of the client processes (``observe``, ``burst``)."""
    parser = argparse.ArgumentParser(prog="python -m bench.burst")
    parser.add_argument("mode", nargs="?", choices=("observe", "burst"))
    parser.add_argument("--url")
    parser.add_argument("--interval", type=float, default=INTERVAL, help="observe: s per ping")
    parser.add_argument("--clients", type=int, default=3000, help="burst: connections")
    args = parser.parse_args()
    if args.mode is None:
        rows = run()
        print_table(rows)
        print(f"saved {write_result('burst', rows)}")
        return
    raise_nofile()
    result = asyncio.run({"observe": _observe, "burst": _burst}[args.mode](args))
    _emit("result", **result)
    sys.stdin.readline()  # LoadGen.result() says when
    os._exit(0)  # let the kernel close what is left


if __name__ == "__main__":
    main()
