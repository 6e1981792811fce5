"""RunsProjection: folding the log gives each run's status, progress, and the recovery lists."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from adwd.events.domain import (
    DomainEvent,
    RunCompleted,
    RunFailed,
    RunProgress,
    RunQueued,
    RunStarted,
    ServiceStarted,
    TriggerRejected,
)
from adwd.events.store import EventStore, NewEvent, StoredEvent
from adwd.projections.runs import RunKey, RunsProjection


def _queued(adw_id: str, workflow_type: str = "plan") -> RunQueued:
    return RunQueued(adw_id=adw_id, workflow_type=workflow_type, logs_path=f"/logs/{adw_id}")


def _started(adw_id: str, workflow_type: str = "plan") -> RunStarted:
    return RunStarted(adw_id=adw_id, workflow_type=workflow_type, pid=1, argv=["x"], cwd="/")


def _progress(
    adw_id: str, percent: int, step: str = "", workflow_type: str = "plan"
) -> RunProgress:
    return RunProgress(
        adw_id=adw_id, workflow_type=workflow_type, progress_percent=percent, current_step=step
    )


def _fold(events: list[DomainEvent]) -> RunsProjection:
    projection = RunsProjection()
    for seq, event in enumerate(events, start=1):
        projection.apply(StoredEvent(seq, 0.0, "s", "t", 1, "system", "", event))
    return projection


def test_lifecycle_of_one_run() -> None:
    projection = _fold([_queued("a")])
    view = projection.runs[("a", "plan")]
    assert (view.status, view.queued_seq, view.last_seq) == ("queued", 1, 1)
    assert view.request == _queued("a")

    projection = _fold([_queued("a"), _started("a"), _progress("a", 30, "build")])
    view = projection.runs[("a", "plan")]
    assert (view.status, view.progress_percent, view.current_step) == ("running", 30, "build")
    assert (view.last_seq, projection.seq) == (3, 3)

    completed = RunCompleted(adw_id="a", workflow_type="plan", duration_s=1.0)
    view = _fold([_queued("a"), _started("a"), _progress("a", 30), completed]).runs[("a", "plan")]
    assert (view.status, view.progress_percent) == ("completed", 100)


def test_progress_without_a_step_keeps_the_last_step() -> None:
    events = [_queued("a"), _started("a"), _progress("a", 10, "plan"), _progress("a", 20)]
    view = _fold(events).runs[("a", "plan")]
    assert (view.progress_percent, view.current_step) == (20, "plan")


def test_failure_keeps_the_progress_reached() -> None:
    failed = RunFailed(adw_id="a", workflow_type="plan", reason="exit 1", exit_code=1)
    view = _fold([_queued("a"), _started("a"), _progress("a", 60), failed]).runs[("a", "plan")]
    assert (view.status, view.progress_percent, view.last_seq) == ("failed", 60, 4)


def test_a_rerun_replaces_the_view() -> None:
    done = RunCompleted(adw_id="a", workflow_type="plan", duration_s=1.0)
    projection = _fold([_queued("a"), _started("a"), done, _queued("a")])
    view = projection.runs[("a", "plan")]
    assert (view.status, view.queued_seq, view.progress_percent) == ("queued", 4, 0)
    assert [v.queued_seq for v in projection.waiting()] == [4]


def test_other_events_and_unknown_runs_only_advance_seq() -> None:
    events: list[DomainEvent] = [
        ServiceStarted(pid=1, host="h", port=1, max_concurrent=1),
        TriggerRejected(error="conflict", message="m"),
        _started("ghost"),
        _progress("ghost", 50),
    ]
    projection = _fold(events)
    assert (projection.runs, projection.seq) == ({}, 4)


def test_runs_of_one_adw_id_with_different_types_are_separate() -> None:
    projection = _fold([_queued("a", "plan"), _queued("a", "build"), _started("a", "build")])
    assert projection.runs[("a", "plan")].status == "queued"
    assert projection.runs[("a", "build")].status == "running"


def test_fold_of_a_real_log(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db")
    try:
        store.append([NewEvent("workflow:a", e) for e in (_queued("a"), _queued("b"))])
        store.append([NewEvent("workflow:a", _started("a"))])
        projection = RunsProjection()
        for stored in store.read():
            projection.apply(stored)
    finally:
        store.close()
    assert [v.request.adw_id for v in projection.in_flight()] == ["a"]
    assert [v.request.adw_id for v in projection.waiting()] == ["b"]
    assert projection.seq == 3


@st.composite
def interleaved_runs(draw: st.DrawFn) -> tuple[list[DomainEvent], dict[RunKey, tuple[str, int]]]:
    """Several runs, each queued -> started -> progress* -> completed|failed (or cut
    short), interleaved at random; with each run's expected (status, progress)."""
    keys = draw(
        st.lists(
            st.tuples(st.sampled_from("abcde"), st.sampled_from(["plan", "build"])),
            unique=True,
            max_size=6,
        )
    )
    lanes: list[list[DomainEvent]] = []
    expected: dict[RunKey, tuple[str, int]] = {}
    for adw_id, wt in keys:
        lane: list[DomainEvent] = [_queued(adw_id, wt)]
        stage = draw(st.sampled_from(["queued", "running", "completed", "failed"]))
        percent = 0
        if stage != "queued":
            lane.append(_started(adw_id, wt))
            for p in draw(st.lists(st.integers(0, 100), max_size=4)):
                lane.append(_progress(adw_id, p, workflow_type=wt))
                percent = p
        if stage == "completed":
            lane.append(RunCompleted(adw_id=adw_id, workflow_type=wt, duration_s=1.0))
            percent = 100
        elif stage == "failed":
            lane.append(RunFailed(adw_id=adw_id, workflow_type=wt, reason="boom"))
        lanes.append(lane)
        expected[(adw_id, wt)] = (stage, percent)
    # Any order of lane picks is an interleaving that keeps each run's own order.
    picks = draw(st.permutations([i for i, lane in enumerate(lanes) for _ in lane]))
    cursors = [iter(lane) for lane in lanes]
    return [next(cursors[i]) for i in picks], expected


@settings(max_examples=200, deadline=None)
@given(interleaved_runs())
def test_any_interleaving_folds_to_each_runs_final_state(
    drawn: tuple[list[DomainEvent], dict[RunKey, tuple[str, int]]],
) -> None:
    events, expected = drawn
    projection = _fold(events)
    assert projection.seq == len(events)
    assert {k: (v.status, v.progress_percent) for k, v in projection.runs.items()} == expected

    queued_at = {
        (e.adw_id, e.workflow_type): seq
        for seq, e in enumerate(events, start=1)
        if isinstance(e, RunQueued)
    }
    by_queue_order = sorted(expected, key=queued_at.__getitem__)
    assert [(v.request.adw_id, v.request.workflow_type) for v in projection.waiting()] == [
        k for k in by_queue_order if expected[k][0] == "queued"
    ]
    assert [(v.request.adw_id, v.request.workflow_type) for v in projection.in_flight()] == [
        k for k in by_queue_order if expected[k][0] == "running"
    ]
    for key, view in projection.runs.items():
        assert view.queued_seq == queued_at[key]
        assert view.last_seq == max(
            seq
            for seq, e in enumerate(events, start=1)
            if (getattr(e, "adw_id", None), getattr(e, "workflow_type", None)) == key
        )
