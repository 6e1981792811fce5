"""Projections folded live (batch by batch, saved with checkpoints, restarted)
equal projections rebuilt from the stored log; replay is deterministic."""

from __future__ import annotations

import tempfile
from dataclasses import astuple
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from adwd.events.domain import (
    CancelRequested,
    DomainEvent,
    ErrorReported,
    ResourceUsage,
    RunCompleted,
    RunFailed,
    RunProgress,
    RunQueued,
    RunStarted,
    ServiceStarted,
    StageChanged,
    TriggerDeduplicated,
    TriggerRejected,
)
from adwd.events.store import EventStore, NewEvent
from adwd.projections.bundle import Projections
from adwd.projections.views import ViewStore, catch_up

TYPES = ["adw_plan_iso", "adw_build_iso", "adw_test_iso"]


@st.composite
def histories(draw: st.DrawFn) -> list[DomainEvent]:
    """A valid interleaving of runs: queued -> started -> progress* -> ended, plus noise."""
    n_runs = draw(st.integers(1, 8))
    runs: list[list[DomainEvent]] = []
    for i in range(n_runs):
        adw_id, wt = f"r{i}", draw(st.sampled_from(TYPES))  # a key is never re-queued while active
        recovering = draw(st.sampled_from([None, ("system.spawn", "retry"),
                                           ("workflow.exit_nonzero", "retry_heavy")]))  # fmt: skip
        life: list[DomainEvent] = [
            RunQueued(
                adw_id=adw_id, workflow_type=wt, logs_path="/l", connection_id=f"c{i % 3}",
                covers=draw(st.none() | st.lists(st.sampled_from(["plan", "build"]), max_size=2)),
                request_id=draw(st.sampled_from([None, f"q{i}", "q0"])),  # "q0": a re-send
                recovers_class=recovering[0] if recovering else None,
                recovery=recovering[1] if recovering else None,
            )
        ]  # fmt: skip
        stage = draw(st.integers(0, 3))  # 0 queued, 1 running, 2 ended, 3 cancelled before start
        if stage == 3:
            life.append(RunFailed(adw_id=adw_id, workflow_type=wt, reason="c", cancelled=True))
        if stage in (1, 2):
            expected = draw(st.none() | st.floats(0.1, 10))
            life.append(
                RunStarted(
                    adw_id=adw_id, workflow_type=wt, pid=100 + i, argv=["x"], cwd="/",
                    expected_s=expected,
                )
            )  # fmt: skip
            for p in draw(st.lists(st.integers(0, 100), max_size=4)):
                life.append(
                    RunProgress(adw_id=adw_id, workflow_type=wt, progress_percent=p,
                                current_step=f"s{p}")
                )  # fmt: skip
            card = "backlog"
            for to in draw(st.lists(st.sampled_from(["plan", "build", "test", "errored"]),
                                    max_size=3)):  # fmt: skip
                life.append(StageChanged(adw_id=adw_id, workflow_type=wt, from_stage=card,
                                         to_stage=to))  # fmt: skip
                card = to
            if stage == 2:
                duration = draw(st.floats(0.01, 100))
                usage = ResourceUsage(cpu_user_s=0.5, max_rss_kb=1000)
                if draw(st.booleans()):
                    life.append(RunCompleted(adw_id=adw_id, workflow_type=wt, duration_s=duration,
                                             resource_usage=usage))  # fmt: skip
                else:
                    life.append(RunFailed(adw_id=adw_id, workflow_type=wt, reason="exit 1",
                                          exit_code=1, duration_s=duration))  # fmt: skip
                    life.append(ErrorReported(
                        error_id=f"e{i}", category="workflow", severity="medium",
                        description="d", suggested_actions=[], recovery_options=["retry"],
                        adw_id=adw_id, workflow_type=wt, error_class="workflow.exit_nonzero",
                        stage=draw(st.sampled_from(["", "plan", "build"])),
                    ))  # fmt: skip
        runs.append(life)
    noise: list[DomainEvent] = [
        ServiceStarted(pid=1, host="h", port=1, max_concurrent=draw(st.integers(1, 4))),
        TriggerRejected(error="validation_error", message="bad", connection_id="c1"),
        TriggerDeduplicated(
            adw_id="r0", workflow_type=TYPES[0], logs_path="/l", connection_id="c2"
        ),
        CancelRequested(adw_id="zz", reason="x", outcome="not_found", connection_id="c0"),
    ]
    # Interleave: keep each run's own order, shuffle between runs and noise.
    streams = [*runs, *[[e] for e in draw(st.lists(st.sampled_from(noise), max_size=4))]]
    out: list[DomainEvent] = []
    while any(streams):
        live = [s for s in streams if s]
        out.append(draw(st.sampled_from(live)).pop(0))
    return out


def _state(p: Projections) -> dict[str, Any]:
    return {
        "seq": p.seq,
        "runs": {k: astuple(v) for k, v in sorted(p.runs.runs.items())},
        "metrics": {
            k: (m.completed, m.failed, m.durations, list(m.recent))
            for k, m in sorted(p.metrics.types.items())
        },
        "waiting": list(p.queue.waiting.items()),
        "running": sorted(p.queue.running.items()),
        "expected": {t: p.queue.expected(t) for t in TYPES},
        "max_concurrent": p.queue.max_concurrent,
        "queue": p.queue.entries(now=1e12),
        "card_stages": p.runs.card_stages(),
        "requests": list(p.requests.decisions.items()),
        "lineage": (
            p.lineage.completed,
            p.lineage.known,
            p.lineage.failures,
            p.lineage.last_failure,
            p.lineage.pending,
            {k: astuple(v) for k, v in p.lineage.outcomes.items()},
            {k: list(v) for k, v in p.lineage.durations.items()},
            p.lineage.active,
            p.lineage.ended,
        ),
    }


@settings(max_examples=40, deadline=None)
@given(history=histories(), cuts=st.lists(st.integers(1, 6), min_size=1, max_size=10))
def test_live_with_checkpoints_and_restarts_equals_rebuilt(
    history: list[DomainEvent], cuts: list[int]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore(Path(tmp) / "events.db")
        views = ViewStore(Path(tmp) / "views.db")
        try:
            live = Projections()
            audit_live = []
            i, c = 0, 0
            while i < len(history):
                size = cuts[c % len(cuts)]
                c += 1
                batch = store.append([NewEvent("s", e) for e in history[i : i + size]])
                i += size
                live.apply_all(batch)
                views.save(live, store.epoch)
                if c % 3 == 0:  # a restart: reload from the checkpoint, as the service does
                    audit_live += list(views.audit())
                    live = catch_up(views, store)
            rebuilt = Projections()
            rebuilt.apply_all(store.read())
            assert _state(live) == _state(rebuilt)
            assert _state(catch_up(views, store)) == _state(rebuilt)

            one_by_one = Projections()
            for stored in store.read():
                one_by_one.apply(stored)
            assert _state(one_by_one) == _state(rebuilt)

            audit_rebuilt = rebuilt.audit.take()
            assert list(views.audit()) == audit_rebuilt
            assert len(audit_rebuilt) == rebuilt.audit.count
        finally:
            store.close()
            views.close()


def test_views_from_another_epoch_are_rebuilt(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db")
    views = ViewStore(tmp_path / "views.db")
    try:
        store.append([NewEvent("s", RunQueued(adw_id="a", workflow_type="t", logs_path="/l"))])
        catch_up(views, store)
        assert views.checkpoint() == (1, store.epoch)
        store.rotate_epoch()
        store.append([NewEvent("s", RunQueued(adw_id="b", workflow_type="t", logs_path="/l"))])
        p = catch_up(views, store)
        assert set(p.runs.runs) == {("a", "t"), ("b", "t")}
        assert views.checkpoint() == (2, store.epoch)
    finally:
        store.close()
        views.close()


def test_catch_up_reads_only_events_after_the_checkpoint(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db")
    views = ViewStore(tmp_path / "views.db")
    try:
        store.append([NewEvent("s", RunQueued(adw_id=f"a{i}", workflow_type="t", logs_path="/l"))
                      for i in range(50)])  # fmt: skip
        catch_up(views, store)
        store.append([NewEvent("s", RunQueued(adw_id="late", workflow_type="t", logs_path="/l"))])
        read: list[int] = []
        original = store.read

        def counting_read(since: int = 0, **kw: Any) -> Any:
            for stored in original(since, **kw):
                read.append(stored.seq)
                yield stored

        store.read = counting_read  # type: ignore[method-assign]
        p = catch_up(views, store)
        assert read == [51]
        assert ("late", "t") in p.runs.runs
        assert len(p.runs.runs) == 51
    finally:
        store.close()
        views.close()


def test_long_histories_keep_memory_bounded_and_restarts_equal(tmp_path: Path) -> None:
    from adwd.projections.runs import KEEP_ENDED

    store = EventStore(tmp_path / "events.db")
    views = ViewStore(tmp_path / "views.db")
    try:
        live = Projections()
        for i in range(KEEP_ENDED + 60):
            a = f"long{i}"
            life: list[DomainEvent] = [
                RunQueued(adw_id=a, workflow_type="t", logs_path="/l"),
                RunStarted(adw_id=a, workflow_type="t", pid=1, argv=["x"], cwd="/"),
                RunCompleted(adw_id=a, workflow_type="t", duration_s=1.0 + i),
            ]
            live.apply_all(store.append([NewEvent("s", e) for e in life]))
            if i % 7 == 0:
                views.save(live, store.epoch)
        views.save(live, store.epoch)
        assert len(live.runs.runs) == KEEP_ENDED
        restarted = catch_up(views, store)
        rebuilt = Projections()
        rebuilt.apply_all(store.read())
        assert _state(restarted) == _state(rebuilt) == _state(live)
        assert list(restarted.runs.ended) == list(rebuilt.runs.ended)
        # Every run, also the ones no longer in memory, is in the read model.
        count = views._conn.execute("SELECT count(*) FROM runs WHERE status = 'completed'")
        assert count.fetchone()[0] == KEEP_ENDED + 60
    finally:
        store.close()
        views.close()
