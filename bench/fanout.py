"""Fan-out: one run's progress updates to every connected client, against bare broadcast().

CLIENTS clients connect (from a separate ``bench.loadgen`` process) to
``adwd serve`` (its own process, ended with SIGKILL after the measurement), then
one run starts whose child process prints RATE progress lines a second for
SECONDS s, each line's message being ``time.time()`` when it was written.
Every ``status_update`` a client receives counts as a delivery, with
end-to-end latency = receive time - that timestamp (progress line written by
the child -> frame received: pipe, reader thread, WorkflowActor, group commit,
router, ``broadcast``, the client).

Baseline: a bare ``websockets`` server (same ``serve`` settings as adwd's, on
a loop thread of the benchmark's process) that, on the same schedule, calls
``broadcast()`` with a ``status_update`` of the same shape and size to every
client; each message's timestamp is the time it was due, as if a child had
written it then (an open-loop source, like the child: a server that falls
behind accumulates the same backlog).

Delivered messages per second = deliveries / (last receive - first
timestamp). Traffic is bounded: the clients stop counting WINDOW s after the
first delivery (SECONDS + DRAIN), so an overloaded side is measured over the
same time and its backlog is dropped. The result also holds the clients'
process's CPU share while counting (``client_cpu``): near 1.0 the clients,
not the server, set the pace. Goal: adwd >= 50% of the baseline's
throughput (ratio <= 2). Each figure is the median of 3 rounds (1 in quick mode).

``ADWD_BENCH_QUICK=1`` makes everything small; ``ADWD_BENCH_FANOUT_CLIENTS``,
``ADWD_BENCH_FANOUT_RATE`` and ``ADWD_BENCH_FANOUT_SECONDS`` set one size.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection, broadcast
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from bench.common import median, print_table, row, write_result
from bench.loadgen import AdwdProcess, LoadGen, raise_nofile, rounds, setting, toml_config
from bench.ping_load import BareServer

DRAIN = 3.0  # s after the source stops that deliveries still count

# The child: RATE progress lines a second for SECONDS s, each stamped when written.
EMITTER = """\
import sys, time
rate, seconds = float(sys.argv[1]), float(sys.argv[2])
total = int(rate * seconds)
out = sys.stdout.buffer
start = time.perf_counter()
for i in range(total):
    delay = start + i / rate - time.perf_counter()
    if delay > 0:
        time.sleep(delay)
    line = 'ADW-PROGRESS {"progress_percent": %d, "current_step": "emit", "message": "%r"}\\n'
    out.write((line % (100 * i // total, time.time())).encode())
    out.flush()
"""

# The baseline's message: the shape and size of adwd's status_update for one progress line.
FRAME = (
    '{"type":"status_update","data":{"adw_id":"%s","status":"running","message":"%r",'
    '"progress_percent":%d,"current_step":"emit","workflow_name":"adw_fanout"},"seq":%d}'
)


async def _hold(ws: ServerConnection) -> None:
    with contextlib.suppress(ConnectionClosed):
        await ws.wait_closed()


async def _broadcast(server: BareServer, adw_id: str, rate: float, seconds: float) -> None:
    """Open-loop source: message i is due at start + i/rate and stamped with that time."""
    total = int(rate * seconds)
    start = time.time()
    for i in range(total):
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.time()))
        frame = FRAME % (adw_id, due, 100 * i // total, i + 10)
        broadcast(server.server.connections, frame)


def _adwd_round(
    r: int, tmp: Path, emitter: Path, *, clients: int, rate: float, seconds: float
) -> dict[str, Any]:
    config = toml_config(
        python=sys.executable,
        shutdown_grace_s=1.0,
        workflows={"adw_fanout": {"argv": ["{python}", str(emitter), str(rate), str(seconds)]}},
    )
    # Its own process, ended with SIGKILL: an overloaded loop holds a backlog of
    # broadcasts that a clean stop would wait out (up to 30 s).
    server = AdwdProcess(str(tmp / f"adwd-{r}"), config)
    try:
        load = _loadgen(server.url, clients, rate, seconds)
        load.wait("ready", 120 + clients / 20)
        with connect(server.url, max_size=2**24) as ws:
            trigger = {"workflow_type": "adw_fanout", "adw_id": f"fan{r}"}
            ws.send(json.dumps({"type": "trigger_workflow", "data": trigger}))
            while json.loads(ws.recv(timeout=30))["type"] != "trigger_response":
                pass
        return load.result(seconds + DRAIN + 120, before_exit=server.kill)
    finally:
        server.kill()


def _bare_round(r: int, clients: int, rate: float, seconds: float) -> dict[str, Any]:
    bare = BareServer(_hold)
    try:
        load = _loadgen(f"ws://127.0.0.1:{bare.port}/", clients, rate, seconds)
        load.wait("ready", 120 + clients / 20)
        source = asyncio.run_coroutine_threadsafe(
            _broadcast(bare, f"fan{r}", rate, seconds), bare.loop
        )
        try:
            return load.result(seconds + DRAIN + 120, before_exit=source.cancel)
        finally:
            source.cancel()
    finally:
        bare.stop()


def _loadgen(url: str, clients: int, rate: float, seconds: float) -> LoadGen:
    return LoadGen(
        "fanout", url, clients=clients, expect=int(rate * seconds), window=seconds + DRAIN
    )


def run() -> list[dict[str, object]]:
    """Run the fan-out benchmark; return the table rows."""
    raise_nofile()
    clients = int(setting("fanout_clients", 1000, 100))
    rate = setting("fanout_rate", 2000, 100)
    seconds = setting("fanout_seconds", 5, 2)
    keys = ("per_s", "p50_s", "p99_s", "delivered", "client_cpu")
    got: dict[str, list[float]] = {f"{s}{k}": [] for s in "ab" for k in keys}
    closed: list[dict[str, int]] = []
    with tempfile.TemporaryDirectory(prefix="adwd-bench-fanout-") as tmp_name:
        tmp = Path(tmp_name)
        emitter = tmp / "emit.py"
        emitter.write_text(EMITTER)
        for r in range(rounds()):
            adwd = _adwd_round(r, tmp, emitter, clients=clients, rate=rate, seconds=seconds)
            base = _bare_round(r, clients, rate, seconds)
            closed.append(adwd["closed"])
            for side, doc in (("a", adwd), ("b", base)):
                for k in keys:
                    got[f"{side}{k}"].append(doc[k])
    ms = 1e3
    label = f"fan-out {rate:g}/s to {clients} clients"
    throughput = row(
        f"{label}, delivered msgs/s", median(got["aper_s"]), median(got["bper_s"]), "msg/s",
        cost=False, goal=2.0,
    )  # fmt: skip
    throughput.update(
        offered=rate * clients,
        adwd_delivered=got["adelivered"],
        baseline_delivered=got["bdelivered"],
        adwd_closed=closed,
        # The clients' process's share of a CPU while counting: ~1.0 means the
        # clients, not the server, set the pace (this machine has 2 cores).
        adwd_client_cpu=got["aclient_cpu"],
        baseline_client_cpu=got["bclient_cpu"],
    )
    return [
        throughput,
        row(f"{label}, end-to-end p50", median(got["ap50_s"]) * ms, median(got["bp50_s"]) * ms,
            "ms", cost=True),
        row(f"{label}, end-to-end p99", median(got["ap99_s"]) * ms, median(got["bp99_s"]) * ms,
            "ms", cost=True),
    ]  # fmt: skip


def main() -> None:
    """Run, print and save."""
    rows = run()
    print_table(rows)
    print(f"saved {write_result('fanout', rows)}")


if __name__ == "__main__":
    main()
