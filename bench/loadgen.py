"""Client-side load for the benchmarks, run as its own process.

``python -m bench.loadgen MODE --url ws://127.0.0.1:PORT/... [options]`` opens
asyncio ``websockets`` clients and prints JSON lines on stdout: progress lines
``{"event": "ready", ...}`` and, last, ``{"event": "result", ...}``. Modes:

- ``ping``: ``--clients`` background clients each send a ping every
  ``--interval`` s (random phase); one more, the probe, does sequential
  ping -> pong round trips for ``--duration`` s. Result: the probe's p50/p99.
- ``fanout``: ``--clients`` connect and print ``ready``; then every
  ``status_update`` whose ``message`` is a ``time.time()`` float counts as a
  delivery, with latency = receive time - that float. Ends when every client
  has ``--expect`` of them, or ``--window`` s after the first one arrives.
- ``trigger``: ``--clients`` each (after a ``subscribe`` to its own adw_ids)
  send ``--per-client`` triggers one after another; trigger -> trigger_response.
- ``hold``: open ``--clients`` idle connections, print ``ready`` with the
  connect rate, hold them until a line (or EOF) on stdin, report how many
  were still open.

The benchmarks drive it through :class:`LoadGen`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import queue
import random
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.protocol import State

PING = json.dumps({"type": "ping"})
CONNECT_CONCURRENCY = 64  # handshakes in flight at once (stays under the listen backlog)


def raise_nofile() -> int:
    """Raise the soft file limit to the hard one; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


async def _open(url: str) -> ClientConnection:
    last: BaseException | None = None
    for attempt in range(8):
        try:
            return await connect(url, open_timeout=60, ping_interval=None, max_size=2**24)
        except (OSError, TimeoutError) as exc:  # backlog full, reset: try again
            last = exc
            await asyncio.sleep(0.1 * (attempt + 1))
    assert last is not None
    raise last


async def _open_all(url: str, n: int) -> tuple[list[ClientConnection], float]:
    """Open n connections (CONNECT_CONCURRENCY at a time); return them and the seconds taken."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one() -> ClientConnection:
        async with gate:
            return await _open(url)

    start = time.perf_counter()
    conns = await asyncio.gather(*(one() for _ in range(n)))
    return list(conns), time.perf_counter() - start


async def _drain(ws: ClientConnection) -> None:
    with contextlib.suppress(Exception):
        async for _ in ws:
            pass


# -- ping ------------------------------------------------------------------------


async def _ping(args: argparse.Namespace) -> dict[str, Any]:
    conns, connect_s = await _open_all(args.url, args.clients)
    probe = await _open(args.url)
    stop = asyncio.Event()
    pongs = [0]

    async def read(ws: ClientConnection) -> None:
        with contextlib.suppress(Exception):
            async for frame in ws:
                if '"pong"' in frame:
                    pongs[0] += 1

    async def pinger(ws: ClientConnection) -> None:
        await asyncio.sleep(random.uniform(0, args.interval))
        due = time.monotonic()
        with contextlib.suppress(Exception):
            while not stop.is_set():
                await ws.send(PING)
                due += args.interval
                await asyncio.sleep(max(0.0, due - time.monotonic()))

    tasks = [asyncio.create_task(f(ws)) for ws in conns for f in (read, pinger)]
    await asyncio.sleep(args.warmup)  # every background client has pinged at least once
    rtts: list[float] = []
    end = time.monotonic() + args.duration
    while time.monotonic() < end:
        start = time.perf_counter()
        await probe.send(PING)
        while json.loads(await probe.recv())["type"] != "pong":
            pass
        rtts.append(time.perf_counter() - start)
        await asyncio.sleep(args.gap)
    stop.set()
    for task in tasks:
        task.cancel()
    return {
        "connect_s": connect_s,
        "probes": len(rtts),
        "p50_s": _pct(rtts, 50),
        "p99_s": _pct(rtts, 99),
        "background_pongs": pongs[0],
        "open": sum(ws.state is State.OPEN for ws in conns),
    }


# -- fanout ----------------------------------------------------------------------


class _FanoutCount:
    """What the fan-out clients received: deliveries, latencies, how they ended."""

    def __init__(self, clients: int, expect: int, window: float) -> None:
        self.latencies: list[float] = []
        self.got = [0] * clients
        self.first_sent = float("inf")
        self.first_recv = self.last_recv = 0.0
        self.deadline = float("inf")  # window s after the first delivery
        self.cpu_at_start = 0.0
        self.closes: dict[str, int] = {}
        self.done = asyncio.Event()
        self.started = asyncio.Event()
        self.wanted = expect * clients
        self.window = window

    async def read(self, i: int, ws: ClientConnection) -> None:
        """Count one connection's status_updates until the window closes."""
        try:
            async for frame in ws:
                now = time.time()
                if now > self.deadline:
                    # Stop here, not when a timeout gets the loop back: a connection
                    # with a backlog reads on without ever yielding.
                    self.done.set()
                    break
                if '"status_update"' not in frame:
                    continue
                try:
                    sent = float(json.loads(frame)["data"]["message"])
                except (KeyError, ValueError):
                    continue
                self._count(i, now, sent)
        except Exception:
            pass
        code = str(ws.close_code)
        self.closes[code] = self.closes.get(code, 0) + 1

    def _count(self, i: int, now: float, sent: float) -> None:
        self.latencies.append(now - sent)
        self.first_sent = min(self.first_sent, sent)
        self.last_recv = now
        self.got[i] += 1
        if not self.started.is_set():
            self.first_recv, self.deadline = now, now + self.window
            self.cpu_at_start = time.process_time()
            self.started.set()
        if len(self.latencies) >= self.wanted:
            self.done.set()

    def result(self, conns: list[ClientConnection]) -> dict[str, Any]:
        """The figures, once counting stopped."""
        # This process's share of a CPU while it counted: near 1.0, the clients (not
        # the server) are what limits the deliveries per second.
        wall = max(time.time() - self.first_recv, 1e-9)
        span = max(self.last_recv - self.first_sent, 1e-9)
        return {
            "delivered": len(self.latencies),
            "wanted": self.wanted,
            "span_s": span,
            "per_s": len(self.latencies) / span,
            "p50_s": _pct(self.latencies, 50),
            "p99_s": _pct(self.latencies, 99),
            "min_per_client": min(self.got),
            "max_per_client": max(self.got),
            "open": sum(ws.state is State.OPEN for ws in conns),
            "closed": self.closes,
            "client_cpu": (time.process_time() - self.cpu_at_start) / wall,
        }


async def _fanout(args: argparse.Namespace) -> dict[str, Any]:
    conns, connect_s = await _open_all(args.url, args.clients)
    await asyncio.sleep(args.settle)  # every connection's catch-up is done
    count = _FanoutCount(len(conns), args.expect, args.window)
    tasks = [asyncio.create_task(count.read(i, ws)) for i, ws in enumerate(conns)]
    _emit("ready", connect_s=connect_s, clients=len(conns))
    await asyncio.wait_for(count.started.wait(), timeout=args.start_timeout)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(count.done.wait(), timeout=args.window)
    result = count.result(conns)
    for task in tasks:
        task.cancel()
    return {"connect_s": connect_s, **result}


# -- trigger ---------------------------------------------------------------------


async def _trigger(args: argparse.Namespace) -> dict[str, Any]:
    conns, connect_s = await _open_all(args.url, args.clients)
    ids = [[f"{args.prefix}{c}x{k}" for k in range(args.per_client)] for c in range(len(conns))]
    if args.subscribe:
        for ws, own in zip(conns, ids, strict=True):
            await ws.send(json.dumps({"type": "subscribe", "data": {"adw_ids": own}}))
        for ws in conns:
            while json.loads(await ws.recv())["type"] != "subscribed":
                pass
    await asyncio.sleep(args.settle)
    rtts: list[float] = []
    accepted = [0]
    marks = {"first": float("inf"), "last": 0.0}
    go = asyncio.Event()

    async def client(ws: ClientConnection, own: list[str]) -> None:
        await go.wait()
        for adw_id in own:
            frame = json.dumps(
                {
                    "type": "trigger_workflow",
                    "data": {"workflow_type": args.workflow, "adw_id": adw_id},
                }
            )
            start = time.perf_counter()
            marks["first"] = min(marks["first"], start)
            await ws.send(frame)
            while True:
                msg = json.loads(await ws.recv())
                if msg["type"] == "trigger_response":
                    break
            now = time.perf_counter()
            marks["last"] = max(marks["last"], now)
            rtts.append(now - start)
            accepted[0] += msg["data"]["status"] == "accepted"

    tasks = [asyncio.create_task(client(ws, own)) for ws, own in zip(conns, ids, strict=True)]
    go.set()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=args.timeout)
    span = max(marks["last"] - marks["first"], 1e-9)
    return {
        "connect_s": connect_s,
        "triggers": len(rtts),
        "accepted": accepted[0],
        "span_s": span,
        "accepted_per_s": accepted[0] / span,
        "p50_s": _pct(rtts, 50),
        "p99_s": _pct(rtts, 99),
    }


# -- hold ------------------------------------------------------------------------


async def _hold(args: argparse.Namespace) -> dict[str, Any]:
    conns, connect_s = await _open_all(args.url, args.clients)
    tasks = [asyncio.create_task(_drain(ws)) for ws in conns]
    _emit("ready", connect_s=connect_s, per_s=len(conns) / connect_s, clients=len(conns))
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    open_now = sum(ws.state is State.OPEN for ws in conns)
    for task in tasks:
        task.cancel()
    return {"connect_s": connect_s, "per_s": len(conns) / connect_s, "open": open_now}


MODES = {"ping": _ping, "fanout": _fanout, "trigger": _trigger, "hold": _hold}


def main() -> None:
    """Parse, run one mode, print its result, exit without closing politely."""
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("--url", required=True)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--interval", type=float, default=1.0, help="ping: per background client")
    parser.add_argument("--duration", type=float, default=5.0, help="ping: probing time")
    parser.add_argument("--warmup", type=float, default=1.5, help="ping: load before probing")
    parser.add_argument("--gap", type=float, default=0.005, help="ping: between probes")
    parser.add_argument("--expect", type=int, default=0, help="fanout: deliveries per client")
    parser.add_argument("--window", type=float, default=10.0, help="fanout: s after the first")
    parser.add_argument("--start-timeout", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=1.0, help="after connecting")
    parser.add_argument("--per-client", type=int, default=1, help="trigger: triggers each")
    parser.add_argument("--workflow", default="adw_noop", help="trigger: workflow_type")
    parser.add_argument("--prefix", default="t", help="trigger: adw_id prefix")
    parser.add_argument("--subscribe", action="store_true", help="trigger: follow own runs only")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    raise_nofile()
    result = asyncio.run(MODES[args.mode](args))
    _emit("result", **result)
    sys.stdin.readline()  # the benchmark says when (e.g. after stopping its source)
    os._exit(0)  # thousands of sockets: let the kernel close them


class LoadGen:
    """A loadgen process, seen from a benchmark."""

    def __init__(self, mode: str, url: str, **options: object) -> None:
        argv = [sys.executable, "-m", "bench.loadgen", mode, "--url", url]
        for key, value in options.items():
            flag = "--" + key.replace("_", "-")
            if value is True:
                argv.append(flag)
            elif value is not False and value is not None:
                argv += [flag, str(value)]
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=_REPO
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def wait(self, event: str, timeout: float) -> dict[str, Any]:
        """The next JSON line of this ``event``; raise if the process ends or times out."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                raise TimeoutError(f"loadgen: no {event!r} within {timeout:g} s") from None
            if line is None:
                raise RuntimeError(f"loadgen exited ({self.proc.wait()}) before {event!r}")
            with contextlib.suppress(json.JSONDecodeError):
                doc = json.loads(line)
                if doc.get("event") == event:
                    return dict(doc)

    def tell(self, line: str = "go") -> None:
        """Write a line to its stdin."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def result(
        self, timeout: float, before_exit: Callable[[], object] | None = None
    ) -> dict[str, Any]:
        """Its final result; then (after ``before_exit``) it exits, dropping its connections."""
        doc = self.wait("result", timeout)
        if before_exit is not None:
            before_exit()
        with contextlib.suppress(BrokenPipeError):
            self.tell("exit")
        self.proc.wait(timeout=30)
        return doc

    def kill(self) -> None:
        """End it now."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- helpers shared by the benchmarks that use this load ---------------------------


class AdwdProcess:
    """``adwd serve`` as its own process (port 0), so its RSS and threads are its own and
    an overloaded one can be ended at once (SIGKILL: the data directory is thrown away)."""

    def __init__(self, data_dir: str, config_toml: str = "", timeout: float = 60) -> None:
        os.makedirs(data_dir, exist_ok=True)
        config = os.path.join(data_dir, "adwd.toml")
        with open(config, "w") as f:
            f.write(config_toml)
        self._log_path = os.path.join(data_dir, "adwd.stderr")
        self._log = open(self._log_path, "wb")  # noqa: SIM115 (closed in kill)
        argv = [sys.executable, "-m", "adwd", "serve", "--port", "0",
                "--data-dir", data_dir, "--config", config]  # fmt: skip
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, cwd=_REPO
        )
        self.pid = self.proc.pid
        self.port = 0
        deadline = time.monotonic() + timeout
        while not self.port:
            with open(self._log_path, "rb") as f:
                for line in f:
                    if line.startswith(b"adwd: serving ws://"):
                        self.port = int(line.split(b":")[3].split(b"/")[0])
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                with open(self._log_path, "rb") as f:
                    raise RuntimeError(f"adwd serve did not start: {f.read()[-2000:]!r}")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        """Where clients connect."""
        return f"ws://127.0.0.1:{self.port}/ws/trigger"

    def kill(self) -> None:
        """SIGKILL it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._log.close()


def toml_config(**settings: object) -> str:
    """A TOML config: top-level settings, and ``workflows`` as {name: {field: value}}."""
    workflows = settings.pop("workflows", {})
    lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    for name, spec in workflows.items():  # type: ignore[attr-defined]
        lines.append(f"[workflows.{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in spec.items()]
    return "\n".join(lines) + "\n"


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS (KiB) and Threads of a process, from /proc/<pid>/status."""
    found = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "Threads"):
                found[key] = int(value.split()[0])
    return found


def quick() -> bool:
    """ADWD_BENCH_QUICK=1: every size small, for a run of a minute or two."""
    return os.environ.get("ADWD_BENCH_QUICK", "") not in ("", "0")


def setting(name: str, full: float, small: float) -> float:
    """A size: ``$ADWD_BENCH_<NAME>`` if set, else ``small`` in quick mode, else ``full``."""
    value = os.environ.get(f"ADWD_BENCH_{name.upper()}")
    if value:
        return float(value)
    return small if quick() else full


def rounds() -> int:
    """Rounds per benchmark: 3 (1 in quick mode); ``ADWD_BENCH_ROUNDS`` overrides."""
    return int(setting("rounds", 3, 1))


def bare_serve_options() -> dict[str, Any]:
    """``serve`` settings of the bare baselines: adwd's own (keepalive, frame limit and
    permessage-deflate as its default config has them, same extension and threshold)."""
    from adwd.service.config import Config
    from adwd.transport.deflate import server_extensions

    config = Config()
    return {
        "ping_interval": 20,
        "ping_timeout": 20,
        "max_size": 1024 * 1024,
        "compression": None,
        "extensions": server_extensions(config.compression, config.compression_min_bytes),
    }


if __name__ == "__main__":
    main()
