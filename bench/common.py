"""Shared helpers: percentiles, table rows, result files, the results table."""

from __future__ import annotations

import json
import platform
import statistics
import threading
import time
from pathlib import Path
from typing import IO, Any

RESULTS = Path(__file__).resolve().parent / "results"


def drain(stream: IO[str]) -> None:
    """Read a server's stderr to its end on a thread, once its port is known: a
    pipe nobody reads fills up (64 KiB) and blocks the server on its next log line."""
    threading.Thread(target=stream.read, daemon=True).start()


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0..100) by nearest rank."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    """The median."""
    return statistics.median(values)


def row(
    label: str, adwd: float, baseline: float, unit: str, *, cost: bool, goal: float | None = None
) -> dict[str, object]:
    """A table row. ``cost``: the figures are costs (lower is better), else rates; the
    ratio is always adwd's cost over the baseline's, so <= 2 means "at least half as good"."""
    ratio = adwd / baseline if cost else baseline / adwd
    return {
        "benchmark": label,
        "adwd": adwd,
        "baseline": baseline,
        "unit": unit,
        "ratio": ratio,
        "goal": f"<= {goal:g}x" if goal else "-",
        "held": (ratio <= goal) if goal else None,
    }


def write_result(name: str, rows: list[dict[str, Any]]) -> Path:
    """Write a benchmark's rows with the machine's description."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    doc = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": __import__("os").cpu_count(),
        },
        "rows": rows,
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def print_table(rows: list[dict[str, Any]]) -> None:
    """benchmark | adwd | baseline | ratio | goal | held."""
    header = ("benchmark", "adwd", "baseline", "ratio", "goal", "held")
    table = [header] + [
        (
            r["benchmark"],
            f"{r['adwd']:.4g} {r['unit']}",
            f"{r['baseline']:.4g} {r['unit']}",
            f"{r['ratio']:.2f}",
            r.get("goal", "-"),
            {True: "yes", False: "NO", None: "-"}[r.get("held")],
        )
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)))
