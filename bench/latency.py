"""Ping round trip and trigger -> trigger_response, against the bare stack.

- ping -> pong: adwd versus a bare websockets server (same loop settings) that
  answers the same JSON; sequential round trips from one client.
- trigger -> trigger_response: adwd (decode, validate, admit, durable commit,
  route) versus the durable commit alone: one INSERT + COMMIT in a WAL
  database with synchronous=FULL, which is the floor of any
  persist-then-reply design.

Each figure is the median of ROUNDS rounds; ratios are adwd / baseline.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

from websockets.asyncio.server import serve
from websockets.sync.client import connect

from adwd.actors.catalogue import WorkflowSpec
from adwd.service.app import Service
from adwd.service.config import Config
from bench.common import median, percentile, print_table, row, write_result

ROUNDS = 3
PINGS = 2000
TRIGGERS = 200


def _round_trips(url: str, frames: list[str], expect: str) -> list[float]:
    times = []
    with connect(url) as ws:
        for frame in frames:
            start = time.perf_counter()
            ws.send(frame)
            while json.loads(ws.recv())["type"] != expect:
                pass
            times.append(time.perf_counter() - start)
    return times


def _bare_server() -> tuple[int, asyncio.AbstractEventLoop, threading.Thread]:
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    port: list[int] = []

    async def echo(ws):  # type: ignore[no-untyped-def]
        async for _ in ws:
            await ws.send(json.dumps({"type": "pong", "timestamp": int(time.time() * 1000)}))

    async def main() -> None:
        server = await serve(echo, "127.0.0.1", 0)
        port.append(server.sockets[0].getsockname()[1])
        ready.set()
        await asyncio.Future()

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    ready.wait(10)
    return port[0], loop, thread


def _commit_floor(n: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "floor.db")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, payload TEXT)")
        times = []
        payload = json.dumps({"type": "run_queued", "adw_id": "x" * 8, "logs_path": "y" * 60})
        for _ in range(n):
            start = time.perf_counter()
            with db:
                db.execute("INSERT INTO events (payload) VALUES (?)", (payload,))
            times.append(time.perf_counter() - start)
        db.close()
    return times


def run() -> list[dict[str, object]]:
    """Run both benchmarks; return the table rows."""
    tmp = tempfile.mkdtemp(prefix="adwd-bench-")
    config = Config(
        port=0,
        data_dir=tmp,
        max_concurrent=4,
        workflows={"adw_noop": WorkflowSpec(argv=("{python}", "-c", "pass"))},
        python=sys.executable,
    )
    service = Service(config)
    service.start()
    bare_port, _loop, _thread = _bare_server()
    url = f"ws://127.0.0.1:{service.port}/ws/trigger"
    ping = json.dumps({"type": "ping"})
    results: dict[str, list[float]] = {
        k: [] for k in ("a50", "a99", "b50", "b99", "t50", "t99", "f50", "f99")
    }
    try:
        for r in range(ROUNDS):
            adwd = _round_trips(url, [ping] * PINGS, "pong")
            bare = _round_trips(f"ws://127.0.0.1:{bare_port}/", [ping] * PINGS, "pong")
            triggers = [
                json.dumps({"type": "trigger_workflow",
                            "data": {"workflow_type": "adw_noop", "adw_id": f"b{r}x{i}"}})
                for i in range(TRIGGERS)
            ]  # fmt: skip
            trig = _round_trips(url, triggers, "trigger_response")
            floor = _commit_floor(TRIGGERS)
            for key, values in (("a", adwd), ("b", bare), ("t", trig), ("f", floor)):
                results[f"{key}50"].append(percentile(values, 50))
                results[f"{key}99"].append(percentile(values, 99))
    finally:
        service.stop()
    us = 1e6
    rows: list[dict[str, object]] = []
    for label, a, b, goal in (
        ("ping->pong p50", "a50", "b50", None),
        ("ping->pong p99", "a99", "b99", 2.0),
        ("trigger->response p50", "t50", "f50", None),
        ("trigger->response p99", "t99", "f99", None),
    ):
        rows.append(
            row(label, median(results[a]) * us, median(results[b]) * us, "us", cost=True,
                goal=goal)
        )  # fmt: skip
    return rows


def main() -> None:
    """Run, print and save."""
    rows = run()
    print_table(rows)
    print(f"saved {write_result('latency', rows)}")


if __name__ == "__main__":
    main()
