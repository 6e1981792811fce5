"""How the event log grows: events and bytes per run of each example workflow.

The six bundled ADW workflow types run through a real service (in this
process: real sockets, real child processes, the real log), the way a board
runs them: N adw_ids go through plan, then build on the same adw_ids, then
test, review, document and ship, one type at a time, ``max_concurrent`` 4.
Around each type the log is checkpointed into ``events.db`` with ``PRAGMA
wal_checkpoint(TRUNCATE)``, so the file holds everything; then, per run:

- events: rows the type's N runs appended, / N;
- payload: ``sum(length(payload))`` of those rows, / N: the events' JSON alone;
- file: growth of ``events.db``, / N: what an operator sees on disk, the
  payloads plus the other columns, both indexes and the b-tree's free space.

The ratio of the benchmark rows is file bytes over payload bytes: the cost of
storing an event beside its JSON. Paths are part of the payloads (a run's log
path, argv and cwd), so a longer data or project directory makes runs larger.

Run ``python -m bench.growth [--runs N]`` (default 50).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

from adwd.actors.catalogue import DEFAULT_WORKFLOW_TYPES
from adwd.service.app import EVENTS_FILE, Service
from adwd.service.config import Config
from bench.common import print_table, row, write_result

DEFAULT_RUNS = 50
TIMEOUT_S = 300.0  # for one type's N runs


def _checkpoint(path: Path) -> tuple[int, int, int]:
    """Fold the WAL into the file; return (events, sum of payload bytes, file bytes)."""
    conn = sqlite3.connect(path)
    try:
        # The service may be committing its last event as the runs end: retry while busy.
        deadline = time.monotonic() + 10
        while conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"cannot checkpoint {path}: still busy")
            time.sleep(0.05)
        events, payload = conn.execute(
            "SELECT count(*), coalesce(sum(length(payload)), 0) FROM events"
        ).fetchone()
    finally:
        conn.close()
    return int(events), int(payload), path.stat().st_size


def _run_all(url: str, workflow_type: str, adw_ids: list[str]) -> None:
    """Trigger ``workflow_type`` for every adw_id; return when every run completed."""
    pending = set(adw_ids)
    with connect(url, open_timeout=30, max_size=2**24) as ws:
        for number, adw_id in enumerate(adw_ids, start=1):
            data = {"workflow_type": workflow_type, "adw_id": adw_id, "issue_number": number,
                    "trigger_reason": "kanban: moved to In Progress"}  # fmt: skip
            ws.send(json.dumps({"type": "trigger_workflow", "data": data}))
        deadline = time.monotonic() + TIMEOUT_S
        while pending:
            message: dict[str, Any] = json.loads(ws.recv(timeout=deadline - time.monotonic()))
            body = message.get("data") or {}
            if message["type"] == "trigger_response" and body.get("status") != "accepted":
                raise RuntimeError(f"trigger rejected: {body}")
            if message["type"] == "status_update" and body.get("workflow_name") != workflow_type:
                continue
            if message["type"] == "status_update" and body.get("status") == "failed":
                raise RuntimeError(f"{workflow_type} failed for {body['adw_id']}: {body}")
            if message["type"] == "status_update" and body.get("status") == "completed":
                pending.discard(body["adw_id"])


def measure(runs: int = DEFAULT_RUNS) -> list[dict[str, Any]]:
    """Run every example type ``runs`` times; one dict of figures per type, then the sum."""
    with tempfile.TemporaryDirectory(prefix="adwd-bench-growth-") as tmp:
        config = Config(port=0, data_dir=tmp, max_concurrent=4, python=sys.executable)
        service = Service(config)
        service.start()
        url = f"ws://127.0.0.1:{service.port}/ws/trigger"
        path = Path(tmp) / EVENTS_FILE
        adw_ids = [f"g{i:07x}" for i in range(runs)]
        grown: list[tuple[str, int, int, int]] = []  # type, events, payload bytes, file bytes
        try:
            before = _checkpoint(path)
            for workflow_type in DEFAULT_WORKFLOW_TYPES:
                _run_all(url, workflow_type, adw_ids)
                after = _checkpoint(path)
                events, payload, size = (a - b for a, b in zip(after, before, strict=True))
                grown.append((workflow_type, events, payload, size))
                before = after
        finally:
            service.stop()
    events, payload, size = (sum(g[i] for g in grown) for i in (1, 2, 3))
    grown.append(("all six (one adw_id's pipeline)", events, payload, size))
    return [
        {
            "workflow_type": workflow_type,
            "runs": runs,
            "events": events / runs,
            "payload_bytes": payload / runs,
            "file_bytes": size / runs,
            "mb_per_1000_runs": size / runs * 1000 / 1e6,
        }
        for workflow_type, events, payload, size in grown
    ]


def print_growth(figures: list[dict[str, Any]]) -> None:
    """workflow type | runs | events/run | payload B/run | file B/run | MB / 1,000 runs."""
    header = ("workflow type", "runs", "events/run", "payload B/run", "file B/run",
              "MB per 1,000 runs")  # fmt: skip
    table = [header] + [
        (f["workflow_type"], str(f["runs"]), f"{f['events']:.1f}", f"{f['payload_bytes']:.0f}",
         f"{f['file_bytes']:.0f}", f"{f['mb_per_1000_runs']:.2f}")
        for f in figures
    ]  # fmt: skip
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        print("  ".join(cell.rjust(w) if i else cell.ljust(w)
                        for i, (cell, w) in enumerate(zip(line, widths, strict=True))))  # fmt: skip


def rows(figures: list[dict[str, Any]]) -> list[dict[str, object]]:
    """Rows for the suite's table: file bytes per run against payload bytes per run."""
    return [
        row(f"log growth {f['workflow_type']}: {f['events']:.1f} events/run, bytes/run "
            "(file vs payload)", f["file_bytes"], f["payload_bytes"], "B/run", cost=True)
        for f in figures
    ]  # fmt: skip


def run(runs: int = DEFAULT_RUNS) -> list[dict[str, object]]:
    """Measure; return the rows of the suite's table."""
    return rows(measure(runs))


def main() -> None:
    """Measure, print the growth table and save the rows."""
    parser = argparse.ArgumentParser(prog="python -m bench.growth", description=__doc__)
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="runs of each type")
    figures = measure(parser.parse_args().runs)
    print_growth(figures)
    result = rows(figures)
    print()
    print_table(result)
    print(f"saved {write_result('growth', result)}")


if __name__ == "__main__":
    main()
