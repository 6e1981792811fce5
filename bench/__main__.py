"""``make bench``: run every benchmark and print one table.

``python -m bench [NAME ...]`` runs only the benchmarks named (latency,
replay, ping_load, fanout, append, connections, burst, deflate, growth, restart,
monitor_cost, flood).
``ADWD_BENCH_QUICK=1`` makes every size small and every benchmark one round:
the whole suite in a couple of minutes, to check that it works, not to quote.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from bench import (
    append,
    burst,
    connections,
    deflate,
    fanout,
    flood,
    growth,
    latency,
    monitor_cost,
    ping_load,
    replay,
    restart,
)
from bench.common import print_table, write_result
from bench.loadgen import quick

Rows = list[dict[str, object]]


def _latency() -> Rows:
    if quick():
        latency.ROUNDS, latency.PINGS, latency.TRIGGERS = 1, 200, 50
    return latency.run()


def _replay() -> Rows:
    if quick():
        return replay.run(int(os.environ.get("ADWD_BENCH_EVENTS", "100000")))
    return replay.run()


# name -> (run, whether run() saves its own result files)
SUITE: dict[str, tuple[Callable[[], Rows], bool]] = {
    "latency": (_latency, False),
    "replay": (_replay, False),
    "ping_load": (ping_load.run, True),  # saves ping_load.json and trigger_load.json
    "fanout": (fanout.run, False),
    "append": (append.run, False),
    "connections": (connections.run, False),
    "burst": (burst.run, False),
    "deflate": (deflate.run, False),
    "growth": (growth.run, False),
    "restart": (restart.run, False),
    "monitor_cost": (monitor_cost.run, False),
    "flood": (flood.run, False),
}


def main() -> None:
    """Run the suite: each benchmark saves its own result file."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(SUITE))
    names = parser.parse_args().names or list(SUITE)
    unknown = [name for name in names if name not in SUITE]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(SUITE)}")
    rows: Rows = []
    for name in names:
        run, saves = SUITE[name]
        start = time.perf_counter()
        result = run()
        if not saves:
            write_result(name, result)
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
        rows.extend(result)
    print_table(rows)


if __name__ == "__main__":
    main()
