"""Event append: events/s through the EventLogActor, against raw sqlite3.

- adwd: ``EventLogActor(store, subscribers=[...])`` is told ``Append``
  messages of ``run_progress`` events, either BATCH events per Append or one
  event per Append (as a WorkflowActor sends them: the actor's group commit
  then decides the transaction sizes). Timed from the first ``tell`` until a
  subscriber has been handed the last event, i.e. until it is committed
  (WAL, ``synchronous=FULL`` as shipped) and published.
- baseline: raw ``sqlite3`` ``executemany`` of the same rows (the same
  8-column table with its indexes, created by ``EventStore``, and the same
  JSON payloads, built before the clock starts) in transactions of BATCH
  rows, with the same ``journal_mode=WAL`` and ``synchronous=FULL``.

Goal: adwd >= 50% of the baseline's events/s (ratio <= 2). Each figure is the
median of 3 rounds (1 in quick mode). ``ADWD_BENCH_QUICK=1`` or ``ADWD_BENCH_APPEND_EVENTS``
sets the number of events (default 200,000).
"""

from __future__ import annotations

import sqlite3
import tempfile
import threading
import time
from pathlib import Path

import msgspec

from adwd.actors.eventlog import EventLogActor
from adwd.actors.messages import Append
from adwd.events.domain import RunProgress, event_type, workflow_stream
from adwd.events.store import EventStore, NewEvent, StoredEvent
from bench.common import median, print_table, row, write_result
from bench.loadgen import rounds, setting

BATCH = 1000  # rows per baseline transaction, and events per batched Append


def _event(i: int, n: int) -> NewEvent:
    adw_id = f"a{i % 8:07x}"
    return NewEvent(
        workflow_stream(adw_id),
        RunProgress(
            adw_id=adw_id, workflow_type="adw_build_iso", progress_percent=i * 100 // n,
            current_step="edit", message=f"step {i} of {n}",
        ),
    )  # fmt: skip


def _events(n: int) -> list[NewEvent]:
    return [_event(i, n) for i in range(n)]


def _rows(events: list[NewEvent]) -> list[tuple[object, ...]]:
    encoder, now = msgspec.json.Encoder(), time.time()
    return [
        (seq, now, e.stream, event_type(e.event), e.event.VERSION, e.principal,
         e.correlation_id, encoder.encode(e.event).decode())
        for seq, e in enumerate(events, start=1)
    ]  # fmt: skip


def _through_actor(path: Path, events: list[NewEvent], per_append: int) -> tuple[float, int]:
    """Seconds until the last event is committed and published; the number of commits."""
    store = EventStore(path)
    done = threading.Event()
    seen, commits = [0], [0]

    def subscriber(batch: list[StoredEvent]) -> None:
        seen[0] += len(batch)
        commits[0] += 1
        if seen[0] >= len(events):
            done.set()

    actor = EventLogActor.start(store, subscribers=[subscriber])
    start = time.perf_counter()
    for i in range(0, len(events), per_append):
        actor.tell(Append(events[i : i + per_append]))
    done.wait(600)
    elapsed = time.perf_counter() - start
    actor.stop()
    store.close()
    assert seen[0] == len(events)
    return elapsed, commits[0]


def _raw(path: Path, rows: list[tuple[object, ...]]) -> float:
    EventStore(path).close()  # the same table and indexes
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    start = time.perf_counter()
    insert = "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    for i in range(0, len(rows), BATCH):
        with db:
            db.executemany(insert, rows[i : i + BATCH])
    elapsed = time.perf_counter() - start
    db.close()
    return elapsed


def run() -> list[dict[str, object]]:
    """Run the append benchmark; return the table rows."""
    n = int(setting("append_events", 200_000, 20_000))
    events = _events(n)
    rows = _rows(events)
    raw_s, batched_s, single_s, single_commits = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="adwd-bench-append-") as tmp_name:
        tmp = Path(tmp_name)
        for r in range(rounds()):
            raw_s.append(_raw(tmp / f"raw-{r}.db", rows))
            batched_s.append(_through_actor(tmp / f"batched-{r}.db", events, BATCH)[0])
            elapsed, commits = _through_actor(tmp / f"single-{r}.db", events, 1)
            single_s.append(elapsed)
            single_commits.append(commits)
    raw = n / median(raw_s)
    label = f"append {n / 1000:g}k events, events/s"
    single = row(
        f"{label}: 1 event per Append (vs raw {BATCH}/txn)", n / median(single_s), raw,
        "events/s", cost=False, goal=2.0,
    )  # fmt: skip
    single["events_per_commit"] = [n / c for c in single_commits]
    return [
        row(f"{label}: {BATCH} per Append (vs raw {BATCH}/txn)", n / median(batched_s), raw,
            "events/s", cost=False, goal=2.0),
        single,
    ]  # fmt: skip


def main() -> None:
    """Run, print and save."""
    rows = run()
    print_table(rows)
    print(f"saved {write_result('append', rows)}")


if __name__ == "__main__":
    main()
