"""What permessage-deflate costs: server memory per connection and delivery time.

Runs ``adwd serve`` as its own process three times per round: ``compression =
"off"``, ``"deflate"`` as shipped (messages of 1 KiB and more compressed) and
``"deflate"`` with ``compression_min_bytes = 0`` (every message). N clients that
offer deflate connect, then one run of the bundled ``adw_plan_iso`` is delivered
to all of them. Reports the server's RSS growth per connection
(``/proc/<pid>/status``) and the time from trigger to every client having the
run's final status. Medians of rounds.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time

from websockets.asyncio.client import ClientConnection, connect

from bench.common import drain, median, print_table, row, write_result
from bench.loadgen import raise_nofile

N = int(
    os.environ.get(
        "ADWD_BENCH_DEFLATE_CLIENTS", "50" if os.environ.get("ADWD_BENCH_QUICK") else "500"
    )
)
ROUNDS = 2


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    return 0


SETTINGS = {  # name -> config lines
    "off": 'compression = "off"\n',
    "deflate": 'compression = "deflate"\n',  # the default threshold
    "deflate-all": 'compression = "deflate"\ncompression_min_bytes = 0\n',
}


async def _one(setting: str) -> tuple[float, float]:
    tmp = tempfile.mkdtemp(prefix="adwd-deflate-")
    config = os.path.join(tmp, "adwd.toml")
    with open(config, "w") as f:
        f.write(f'port = 0\ndata_dir = "{tmp}/data"\n{SETTINGS[setting]}')
    proc = subprocess.Popen(
        [sys.executable, "-m", "adwd", "serve", "--config", config],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    port = 0
    for line in proc.stderr:
        found = re.search(r":(\d+)/ws/trigger", line)
        if found:
            port = int(found.group(1))
            drain(proc.stderr)
            break
    url = f"ws://127.0.0.1:{port}/ws/trigger"
    try:
        before = _rss_kib(proc.pid)
        clients: list[ClientConnection] = [
            await connect(url, compression="deflate") for _ in range(N)
        ]
        per_connection = (_rss_kib(proc.pid) - before) / N

        async def until_done(ws: ClientConnection) -> None:
            while True:
                message = json.loads(await ws.recv())
                if message["type"] == "status_update" and message["data"]["status"] in (
                    "completed",
                    "failed",
                ):
                    return

        start = time.perf_counter()
        async with connect(url) as trigger:
            await trigger.send(
                json.dumps({"type": "trigger_workflow", "data": {"workflow_type": "adw_plan_iso"}})
            )
            await asyncio.wait_for(asyncio.gather(*(until_done(ws) for ws in clients)), 60)
        took = time.perf_counter() - start
        for ws in clients:
            await ws.close()
        return per_connection, took
    finally:
        proc.terminate()
        proc.wait()
        proc.stderr.close()


def run() -> list[dict[str, object]]:
    """Every setting, ROUNDS times; rows with a deflate setting as 'adwd' and off as baseline."""
    raise_nofile()
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in SETTINGS}
    for _ in range(ROUNDS):
        for setting in SETTINGS:
            figures[setting].append(asyncio.run(_one(setting)))
    rows: list[dict[str, object]] = []
    for setting, what in (("deflate", "deflate >= 1 KiB"), ("deflate-all", "deflate all")):
        for label, index, unit in (("memory per connection", 0, "KiB"), ("run to all", 1, "s")):
            on = median([f[index] for f in figures[setting]])
            off = median([f[index] for f in figures["off"]])
            rows.append(row(f"{what} vs off: {label} ({N} clients)", on, off, unit, cost=True))
    return rows


def main() -> None:
    """Run, print and save."""
    rows = run()
    print_table(rows)
    print(f"saved {write_result('deflate', rows)}")


if __name__ == "__main__":
    main()
