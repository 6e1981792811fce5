"""Replay of the stored log into every projection, against the bare read.

- replay: ``Projections().apply_all(store.read())`` over N stored events
  (1,000,000 by default) versus the same ``store.read()`` consumed and
  nothing else (rows fetched and msgspec-decoded into StoredEvents), the
  floor of any replay. Goal: projections cost at most as much again as the
  read (ratio <= 2).
- catch-up from zero: ``catch_up`` into a fresh ``views.db`` (fold and
  write the read models), against the same bare read; information only.
- catch-up after 1,000 new events: a log of N events and one of N/10, each
  with views checkpointed at its end, get the same 1,000 new events; the
  time of ``catch_up`` on the big log versus the small one. Goal: it does
  not depend on the log's length (ratio <= 1.5).

The log is a seeded imitation of a real service: chains of the six ADW
workflow types per adw_id, up to four runs in flight interleaved, each run
queued, started, 5-30 progress lines, then completed (90%) or failed; now
and then a rejected or deduplicated trigger, a cancel, and a service start
every ~50k events. It is generated once (not timed) and reused by every
round. Each figure is the median of ROUNDS rounds; ratios are adwd cost /
baseline cost, so lower is better.

Run ``python -m bench.replay [--events N]``; ``ADWD_BENCH_EVENTS`` sets the
default N for a quick run.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import os
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from adwd.events.domain import (
    CancelRequested,
    ResourceUsage,
    RunCompleted,
    RunFailed,
    RunProgress,
    RunQueued,
    RunStarted,
    ServiceStarted,
    TriggerDeduplicated,
    TriggerRejected,
    connection_stream,
    workflow_stream,
)
from adwd.events.store import EventStore, NewEvent
from adwd.projections.bundle import Projections
from adwd.projections.views import ViewStore, catch_up
from bench.common import median, print_table, row, write_result

ROUNDS = 3
DEFAULT_EVENTS = 1_000_000
NEW_EVENTS = 1_000  # appended after the checkpoint
BATCH = 10_000  # events per append while generating
IN_FLIGHT = 4  # runs interleaved in the log
SERVICE_START_EVERY = 50_000

WORKFLOWS = (
    "adw_plan_iso", "adw_build_iso", "adw_test_iso",
    "adw_review_iso", "adw_document_iso", "adw_ship_iso",
)  # fmt: skip
TYPICAL_S = dict(zip(WORKFLOWS, (95.0, 240.0, 180.0, 120.0, 60.0, 45.0), strict=True))
STEPS = ("setup", "analyse", "edit", "validate", "commit", "report")


class _Chain:
    """The runs of one adw_id: the workflow types in order, until one fails."""

    def __init__(self, rng: random.Random, adw_id: str, connection: str) -> None:
        self.rng, self.adw_id, self.connection = rng, adw_id, connection
        self.workflow_type = WORKFLOWS[0]
        self.cancel = False
        self.events = self._runs()

    def _runs(self) -> Iterator[NewEvent]:
        rng, adw_id = self.rng, self.adw_id
        stream = workflow_stream(adw_id)
        issue = str(rng.randint(1, 9999))
        for workflow_type in WORKFLOWS[: rng.randint(1, len(WORKFLOWS))]:
            self.workflow_type = workflow_type
            ids = {"adw_id": adw_id, "workflow_type": workflow_type}
            typical = TYPICAL_S[workflow_type]
            yield NewEvent(
                stream,
                RunQueued(
                    **ids,
                    logs_path=f"/srv/adwd/data/agents/{adw_id}/{workflow_type}/execution.log",
                    issue_number=issue,
                    trigger_reason="kanban: moved to In Progress",
                    issue_type=rng.choice(("feature", "bug", "chore")),
                    connection_id=self.connection,
                ),
                "kanban",
                self.connection,
            )
            yield NewEvent(
                stream,
                RunStarted(
                    **ids,
                    pid=rng.randint(1000, 4_000_000),
                    argv=["/usr/bin/python3", f"adws/{workflow_type}.py", issue, adw_id],
                    cwd="/srv/project",
                    proc_start=rng.randint(10_000, 90_000_000),
                    expected_s=round(typical * rng.uniform(0.9, 1.1), 6),
                ),
            )
            steps = rng.randint(5, 30)
            for i in range(1, steps + 1):
                if self.cancel:
                    break
                yield NewEvent(
                    stream,
                    RunProgress(
                        **ids,
                        progress_percent=100 * i // (steps + 1),
                        current_step=STEPS[i * len(STEPS) // (steps + 1)],
                        message=f"step {i} of {steps}",
                    ),
                )
            duration = round(typical * rng.lognormvariate(0, 0.4), 3)
            usage = ResourceUsage(
                cpu_user_s=round(duration * 0.3, 3),
                cpu_system_s=round(duration * 0.05, 3),
                max_rss_kb=rng.randint(40_000, 900_000),
                read_bytes=rng.randint(0, 50_000_000),
                write_bytes=rng.randint(0, 20_000_000),
            )
            if self.cancel:
                yield NewEvent(
                    stream,
                    RunFailed(
                        **ids, reason="cancelled: requested from the board", exit_code=-15,
                        duration_s=duration, cancelled=True, resource_usage=usage,
                    ),
                    "kanban",
                    self.connection,
                )  # fmt: skip
                return
            if rng.random() < 0.9:
                yield NewEvent(
                    stream,
                    RunCompleted(
                        **ids, duration_s=duration, resource_usage=usage, expected_s=typical
                    ),
                )
            else:
                yield NewEvent(
                    stream,
                    RunFailed(
                        **ids, reason=f"exited with status 1; see {workflow_type}/execution.log",
                        exit_code=1, duration_s=duration, progress_percent=50,
                        resource_usage=usage if rng.random() < 0.5 else None, expected_s=typical,
                    ),
                )  # fmt: skip
                return


def events(seed: int, prefix: str = "a") -> Iterator[NewEvent]:
    """An endless, deterministic stream of events as a busy service logs them."""
    rng = random.Random(seed)
    chains: list[_Chain] = []
    numbers = itertools.count()
    since_start = SERVICE_START_EVERY
    while True:
        if since_start >= SERVICE_START_EVERY:
            since_start = rng.randint(-2_000, 2_000)
            yield NewEvent(
                "system",
                ServiceStarted(pid=rng.randint(1000, 4_000_000), host="127.0.0.1", port=8500,
                               max_concurrent=IN_FLIGHT),
            )  # fmt: skip
        since_start += 1
        while len(chains) < IN_FLIGHT:
            adw_id = f"{prefix}{next(numbers):07x}"
            chains.append(_Chain(rng, adw_id, f"c{rng.randint(0, 63):04d}"))
        roll = rng.random()
        chain = rng.choice(chains)
        if roll < 0.002:
            yield NewEvent(
                connection_stream(chain.connection),
                TriggerRejected(
                    error="validation_error",
                    message="Unknown workflow_type 'adw_plan'. Use one of: "
                    + ", ".join(WORKFLOWS)
                    + ".",
                    adw_id=chain.adw_id,
                    workflow_type="adw_plan",
                    details={"field": "data.workflow_type", "allowed": list(WORKFLOWS)},
                    connection_id=chain.connection,
                ),
                "kanban",
                chain.connection,
            )
            continue
        if roll < 0.004:
            yield NewEvent(
                workflow_stream(chain.adw_id),
                TriggerDeduplicated(
                    adw_id=chain.adw_id,
                    workflow_type=chain.workflow_type,
                    logs_path=f"/srv/adwd/data/agents/{chain.adw_id}/{chain.workflow_type}/"
                    "execution.log",
                    connection_id=chain.connection,
                ),
                "kanban",
                chain.connection,
            )
            continue
        if roll < 0.0045:
            found = rng.random() < 0.5
            chain.cancel = chain.cancel or found
            yield NewEvent(
                workflow_stream(chain.adw_id),
                CancelRequested(
                    adw_id=chain.adw_id if found else f"z{rng.randint(0, 2**28):07x}",
                    reason="requested from the board",
                    outcome="cancelling" if found else "not_found",
                    connection_id=chain.connection,
                ),
                "kanban",
                chain.connection,
            )
            continue
        event = next(chain.events, None)
        if event is None:
            chains.remove(chain)
            continue
        yield event


def append(store: EventStore, source: Iterator[NewEvent], n: int) -> None:
    """Append the next ``n`` events of ``source`` in batches of BATCH."""
    while n > 0:
        batch = list(itertools.islice(source, min(n, BATCH)))
        store.append(batch)
        n -= len(batch)


def generate(path: Path, n: int, seed: int) -> Path:
    """A log of exactly ``n`` events at ``path``."""
    store = EventStore(path)
    append(store, events(seed), n)
    assert store.last_seq() == n
    store.close()
    return path


def _timed_read(path: Path) -> float:
    store = EventStore(path, readonly=True)
    start = time.perf_counter()
    collections.deque(store.read(), maxlen=0)
    elapsed = time.perf_counter() - start
    store.close()
    return elapsed


def _timed_replay(path: Path, n: int) -> float:
    store = EventStore(path, readonly=True)
    projections = Projections()
    start = time.perf_counter()
    projections.apply_all(store.read())
    elapsed = time.perf_counter() - start
    assert projections.seq == n
    store.close()
    return elapsed


def _timed_catch_up(views_path: Path, path: Path) -> float:
    views, store = ViewStore(views_path), EventStore(path, readonly=True)
    start = time.perf_counter()
    catch_up(views, store)
    elapsed = time.perf_counter() - start
    assert views.checkpoint()[0] == store.last_seq()
    views.close()
    store.close()
    return elapsed


def _timed_load(views_path: Path) -> float:
    views = ViewStore(views_path)
    start = time.perf_counter()
    views.load()
    elapsed = time.perf_counter() - start
    views.close()
    return elapsed


def run(n: int | None = None) -> list[dict[str, object]]:
    """Run the replay and catch-up benchmarks on a log of ``n`` events; return the rows."""
    n = n or int(os.environ.get("ADWD_BENCH_EVENTS", DEFAULT_EVENTS))
    small = max(n // 10, NEW_EVENTS)
    with tempfile.TemporaryDirectory(prefix="adwd-bench-replay-") as tmp_name:
        tmp = Path(tmp_name)
        big_log = generate(tmp / "big.db", n, seed=1)
        small_log = generate(tmp / "small.db", small, seed=2)

        read_s, replay_s, zero_s = [], [], []
        for _ in range(ROUNDS):
            read_s.append(_timed_read(big_log))
            replay_s.append(_timed_replay(big_log, n))
        for r in range(ROUNDS):
            zero_s.append(_timed_catch_up(tmp / f"views-zero-{r}.db", big_log))

        # Checkpoints at the end of each log; the big one is the last catch-up from zero.
        big_views = tmp / f"views-zero-{ROUNDS - 1}.db"
        small_views = tmp / "views-small.db"
        _timed_catch_up(small_views, small_log)
        big_s, small_s, big_load, small_load = [], [], [], []
        for r in range(ROUNDS):
            for log, views, times, loads in (
                (big_log, big_views, big_s, big_load),
                (small_log, small_views, small_s, small_load),
            ):
                writer = EventStore(log)
                append(writer, events(seed=100 + r, prefix="bcdefgh"[r % 7]), NEW_EVENTS)
                writer.close()
                times.append(_timed_catch_up(views, log))
                loads.append(_timed_load(views))

    read_rate, replay_rate = n / median(read_s), n / median(replay_s)
    zero_rate = n / median(zero_s)
    ms = 1e3
    big_ms, small_ms = median(big_s) * ms, median(small_s) * ms
    big_load_ms, small_load_ms = median(big_load) * ms, median(small_load) * ms
    label_n, label_small = f"{n / 1e6:g}M", f"{small / 1e3:g}k"
    return [
        row(f"replay {label_n} events, events/s (vs bare read)",
            replay_rate, read_rate, "events/s", cost=False, goal=2.0),
        row(f"catch-up from zero {label_n}, events/s (vs bare read)",
            zero_rate, read_rate, "events/s", cost=False),
        row(f"catch-up +{NEW_EVENTS} events, {label_n} log (vs {label_small} log)",
            big_ms, small_ms, "ms", cost=True, goal=1.5),
        row(f"views.load() alone, {label_n} log (vs {label_small} log)",
            big_load_ms, small_load_ms, "ms", cost=True),
    ]  # fmt: skip


def main() -> None:
    """Run, print and save."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.replay", description="Replay and catch-up benchmarks."
    )
    parser.add_argument("--events", type=int, default=None, help="log length (default 1M)")
    args = parser.parse_args()
    rows = run(args.events)
    print_table(rows)
    print(f"saved {write_result('replay', rows)}")


if __name__ == "__main__":
    main()
