"""Ping round trip under load, and trigger throughput, against the bare stack.

Client load comes from a separate process (``bench.loadgen``); traffic stays
on 127.0.0.1.

- ping -> pong under load: one probe client does sequential round trips for
  DURATION s while CLIENTS other clients are connected and each pings once a
  second. Baseline: a bare ``websockets`` server (same ``serve`` settings as
  adwd's) answering the same ``pong`` JSON. Goal: adwd p99 <= 2x baseline p99.
- triggers: TRIGGER_CLIENTS clients, each following only its own runs,
  send PER_CLIENT triggers one after another, all clients at once; the
  workflow is ``/bin/true``. trigger -> trigger_response p50/p99 and accepted
  triggers per second. Baseline: a bare ``websockets`` server that
  group-commits one row per trigger (same 8-column row, WAL,
  ``synchronous=FULL``) in a writer thread and then answers the same
  ``trigger_response`` JSON: the floor of any persist-then-reply design.
  Run twice on adwd: with ``/bin/true`` runs starting as fast as they end,
  and with runs held back (the first sleeps, ``max_concurrent = 1``) to
  measure the trigger path alone. Information only (no goal).

Each figure is the median of 3 rounds (1 in quick mode), each round with a fresh service.
``ADWD_BENCH_QUICK=1`` makes everything small; ``ADWD_BENCH_PING_CLIENTS``,
``ADWD_BENCH_PING_SECONDS``, ``ADWD_BENCH_TRIGGER_CLIENTS`` and
``ADWD_BENCH_TRIGGERS_PER_CLIENT`` set one size.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from adwd.actors.catalogue import WorkflowSpec
from adwd.events.store import EventStore
from adwd.service.app import Service
from adwd.service.config import Config
from bench.common import median, print_table, row, write_result
from bench.loadgen import LoadGen, bare_serve_options, raise_nofile, rounds, setting

Handler = Callable[[ServerConnection], Awaitable[None]]


class BareServer:
    """A bare websockets server on its own loop thread, with adwd's ``serve`` settings."""

    def __init__(self, handler: Handler, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

        async def listen() -> Server:
            return await serve(handler, "127.0.0.1", 0, **{**bare_serve_options(), **options})

        self.server: Server = self.run(listen())
        self.port = self.server.sockets[0].getsockname()[1]

    def run(self, coro: Awaitable[Any], timeout: float = 30) -> Any:
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def stop(self) -> None:
        """Close the server and its connections, end the loop thread."""

        async def close() -> None:
            self.server.close()
            await self.server.wait_closed()

        self.run(close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


async def _echo(ws: ServerConnection) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for _ in ws:
            await ws.send(json.dumps({"type": "pong", "timestamp": int(time.time() * 1000)}))


class _GroupCommitTriggers:
    """The trigger baseline: persist each trigger (group commit), then reply."""

    def __init__(self, path: Path) -> None:
        EventStore(path).close()  # the events table and indexes adwd's log has
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._seq = 0
        self._pending: list[tuple[tuple[Any, ...], asyncio.Future[int]]] = []
        self._wake: asyncio.Event | None = None
        self._writer = ThreadPoolExecutor(1)
        self._task: asyncio.Task[None] | None = None

    def _commit(self, rows: list[tuple[Any, ...]]) -> None:
        with self._db:
            self._db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)

    async def _write_loop(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            await loop.run_in_executor(self._writer, self._commit, [r for r, _ in batch])
            for r, future in batch:
                future.set_result(r[0])

    async def handler(self, ws: ServerConnection) -> None:
        if self._wake is None:
            self._wake = asyncio.Event()
            self._task = asyncio.create_task(self._write_loop())
        with contextlib.suppress(ConnectionClosed):
            await self._serve(ws)

    async def _serve(self, ws: ServerConnection) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        async for frame in ws:
            msg = json.loads(frame)
            if msg.get("type") == "subscribe":
                await ws.send(json.dumps({"type": "subscribed", "data": {}}))
                continue
            data = msg["data"]
            self._seq += 1
            payload = json.dumps({"type": "run_queued", **data, "logs_path": "/tmp/" + "x" * 60})
            row_ = (self._seq, time.time(), f"workflow:{data['adw_id']}", "run_queued", 1,
                    "anonymous", "", payload)  # fmt: skip
            future: asyncio.Future[int] = loop.create_future()
            self._pending.append((row_, future))
            self._wake.set()
            seq = await future
            reply = {
                "type": "trigger_response",
                "data": {
                    "status": "accepted", "adw_id": data["adw_id"],
                    "workflow_name": data["workflow_type"],
                    "logs_path": f"/tmp/agents/{data['adw_id']}/{data['workflow_type']}/"
                    "execution.log",
                    "error": None, "message": "queued", "details": None,
                },
                "seq": seq,
            }  # fmt: skip
            await ws.send(json.dumps(reply))

    async def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def close(self, server: BareServer) -> None:
        server.run(self._cancel())
        self._writer.shutdown()
        self._db.close()


def _ping_round(clients: int, seconds: float) -> tuple[dict[str, Any], dict[str, Any]]:
    options = {"clients": clients, "duration": seconds}
    timeout = 60 + seconds + clients / 20
    with tempfile.TemporaryDirectory(prefix="adwd-bench-ping-") as tmp:
        service = Service(Config(port=0, data_dir=tmp, python=sys.executable))
        service.start()
        try:
            url = f"ws://127.0.0.1:{service.port}/ws/trigger"
            adwd = LoadGen("ping", url, **options).result(timeout)
        finally:
            service.stop()
    bare = BareServer(_echo)
    try:
        base = LoadGen("ping", f"ws://127.0.0.1:{bare.port}/", **options).result(timeout)
    finally:
        bare.stop()
    return adwd, base


class _NoDeadSocketNoise(logging.Filter):
    """After the loadgen exits, the in-process service still sends the runs' updates
    to its vanished clients until it notices: asyncio logs each such write. Not a
    finding of this benchmark; keep it out of the table's way."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "socket.send() raised exception."


def _trigger_round(
    r: int, clients: int, per_client: int
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """adwd with runs of /bin/true, adwd with runs held back, and the bare floor."""
    options = {
        "clients": clients, "per_client": per_client, "workflow": "adw_true",
        "prefix": f"r{r}c", "subscribe": True,
    }  # fmt: skip
    timeout = 120 + clients * per_client / 10
    true = (shutil.which("true") or "/bin/true",)
    adwd = _adwd_triggers(options, timeout, argv=true, max_concurrent=4)
    # The trigger path alone: one run starts and sleeps, every other one waits.
    sleep = (shutil.which("sleep") or "/bin/sleep", "600")
    held = _adwd_triggers(options, timeout, argv=sleep, max_concurrent=1)
    with tempfile.TemporaryDirectory(prefix="adwd-bench-trigger-") as tmp:
        floor = _GroupCommitTriggers(Path(tmp) / "bare.db")
        bare = BareServer(floor.handler)
        try:
            base = LoadGen("trigger", f"ws://127.0.0.1:{bare.port}/", **options).result(timeout)
        finally:
            floor.close(bare)
            bare.stop()
    return adwd, held, base


def _adwd_triggers(
    options: dict[str, Any], timeout: float, *, argv: tuple[str, ...], max_concurrent: int
) -> dict[str, Any]:
    """The trigger load against an in-process service whose workflow runs ``argv``."""
    with tempfile.TemporaryDirectory(prefix="adwd-bench-trigger-") as tmp:
        config = Config(
            port=0,
            data_dir=tmp,
            max_concurrent=max_concurrent,
            max_queue=1_000_000,
            workflows={"adw_true": WorkflowSpec(argv=argv)},
            python=sys.executable,
            shutdown_grace_s=1.0,
        )
        service = Service(config)
        service.start()
        try:
            url = f"ws://127.0.0.1:{service.port}/ws/trigger"
            return LoadGen("trigger", url, **options).result(timeout)
        finally:
            service.stop()


def run_ping() -> list[dict[str, object]]:
    """Ping round trip under load; the table rows."""
    raise_nofile()
    clients = int(setting("ping_clients", 500, 50))
    seconds = setting("ping_seconds", 5, 2)
    keys = ("p50_s", "p99_s")
    got: dict[str, list[float]] = {f"{s}{k}": [] for s in "ab" for k in keys}
    for _ in range(rounds()):
        adwd, base = _ping_round(clients, seconds)
        for side, doc in (("a", adwd), ("b", base)):
            for k in keys:
                got[f"{side}{k}"].append(doc[k])
    us = 1e6
    label = f"ping->pong under load ({clients} clients 1 ping/s)"
    return [
        row(f"{label} p50", median(got["ap50_s"]) * us, median(got["bp50_s"]) * us, "us",
            cost=True),
        row(f"{label} p99", median(got["ap99_s"]) * us, median(got["bp99_s"]) * us, "us",
            cost=True, goal=2.0),
    ]  # fmt: skip


def run_triggers() -> list[dict[str, object]]:
    """Trigger throughput and latency; the table rows."""
    raise_nofile()
    quiet = _NoDeadSocketNoise()
    logging.getLogger("asyncio").addFilter(quiet)
    try:
        return _run_triggers()
    finally:
        logging.getLogger("asyncio").removeFilter(quiet)


def _run_triggers() -> list[dict[str, object]]:
    clients = int(setting("trigger_clients", 200, 20))
    per_client = int(setting("triggers_per_client", 10, 3))
    keys = ("p50_s", "p99_s", "accepted_per_s")
    got: dict[str, list[float]] = {f"{s}{k}": [] for s in "ahb" for k in keys}
    for r in range(rounds()):
        adwd, held, base = _trigger_round(r, clients, per_client)
        if adwd["accepted"] != clients * per_client:
            print(f"trigger round {r}: adwd accepted {adwd['accepted']} of {adwd['triggers']}")
        for side, doc in (("a", adwd), ("h", held), ("b", base)):
            for k in keys:
                got[f"{side}{k}"].append(doc[k])
    ms = 1e3
    label = f"trigger->response ({clients} clients x {per_client})"
    return [
        row(f"{label} p50", median(got["ap50_s"]) * ms, median(got["bp50_s"]) * ms, "ms",
            cost=True),
        row(f"{label} p99", median(got["ap99_s"]) * ms, median(got["bp99_s"]) * ms, "ms",
            cost=True),
        row(f"accepted triggers/s ({clients} clients)", median(got["aaccepted_per_s"]),
            median(got["baccepted_per_s"]), "/s", cost=False),
        row(f"{label} p50, runs held back", median(got["hp50_s"]) * ms,
            median(got["bp50_s"]) * ms, "ms", cost=True),
        row(f"accepted triggers/s ({clients} clients), runs held back",
            median(got["haccepted_per_s"]), median(got["baccepted_per_s"]), "/s", cost=False),
    ]  # fmt: skip


def run() -> list[dict[str, object]]:
    """Both benchmarks; each also saves its own result file."""
    ping = run_ping()
    write_result("ping_load", ping)
    triggers = run_triggers()
    write_result("trigger_load", triggers)
    return ping + triggers


def main() -> None:
    """Run, print and save."""
    rows = run()
    print_table(rows)


if __name__ == "__main__":
    main()
