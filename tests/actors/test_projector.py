"""ProjectionActor: batches that queue up while it works are saved and reported once."""

from __future__ import annotations

import threading
from pathlib import Path

from adwd.actors.messages import Committed
from adwd.actors.projector import ProjectionActor
from adwd.events.domain import RunQueued
from adwd.events.store import EventStore, NewEvent, StoredEvent
from adwd.projections.bundle import Projections
from adwd.projections.views import ViewStore

TIMEOUT = 10.0


class CountingViews(ViewStore):
    """A real ViewStore that counts its saves."""

    saves = 0

    def save(self, projections: Projections, epoch: str) -> None:
        self.saves += 1
        super().save(projections, epoch)


def _queue(store: EventStore, adw_id: str, connection_id: str) -> list[StoredEvent]:
    event = RunQueued(adw_id=adw_id, workflow_type="t", logs_path="/l", connection_id=connection_id)
    return store.append([NewEvent(f"workflow:{adw_id}", event)])


def test_batches_queued_behind_a_busy_actor_settle_once(store: EventStore, tmp_path: Path) -> None:
    views = CountingViews(tmp_path / "views.db")
    actor = ProjectionActor.start(
        projections=Projections(), views=views, epoch=store.epoch, queue_status_interval_s=0
    )
    delivered: list[list[tuple[str, bytes]]] = []
    busy, release = threading.Event(), threading.Event()

    def deliver(frames: list[tuple[str, bytes]]) -> None:
        delivered.append(frames)
        busy.set()
        assert release.wait(TIMEOUT)  # hold the actor inside its first settle

    try:
        actor.proxy().attach(deliver).get(timeout=TIMEOUT)
        actor.tell(Committed(_queue(store, "first", "c0")))
        assert busy.wait(TIMEOUT)
        for i in range(10):  # all of these wait in the inbox
            actor.tell(Committed(_queue(store, f"run{i}", f"c{i + 1}")))
        release.set()
        state = actor.proxy().adw_state("run9").get(timeout=TIMEOUT)
        assert state is not None
        assert state["seq"] == 11
        assert views.saves == 2  # one for the first batch, one for the ten behind it
        # The ten new runs' connections each hear their position once.
        assert sorted(cid for cid, _ in delivered[1]) == sorted(f"c{i + 1}" for i in range(10))
    finally:
        actor.stop()
    assert views.checkpoint() == (11, store.epoch)
    views.close()


def test_stopping_saves_what_was_folded(store: EventStore, tmp_path: Path) -> None:
    views = ViewStore(tmp_path / "views.db")
    actor = ProjectionActor.start(projections=Projections(), views=views, epoch=store.epoch)
    for i in range(5):
        actor.tell(Committed(_queue(store, f"run{i}", "c")))
    actor.stop()
    assert views.checkpoint() == (5, store.epoch)
    assert [v.key[0] for v in views.runs_of("run4")] == ["run4"]
    views.close()


def test_a_run_queued_right_after_a_pass_is_told_by_the_next(
    store: EventStore, tmp_path: Path
) -> None:
    # Passes over the queue are rate-limited: the second run's batch settles within
    # QUEUE_PASS_S of the first pass, so a timer's pass tells its connection.
    views = ViewStore(tmp_path / "views.db")
    actor = ProjectionActor.start(projections=Projections(), views=views, epoch=store.epoch)
    told: dict[str, threading.Event] = {"c1": threading.Event(), "c2": threading.Event()}

    def deliver(frames: list[tuple[str, bytes]]) -> None:
        for connection_id, _frame in frames:
            told[connection_id].set()

    try:
        actor.proxy().attach(deliver).get(timeout=TIMEOUT)
        actor.tell(Committed(_queue(store, "one", "c1")))
        assert told["c1"].wait(TIMEOUT)
        actor.tell(Committed(_queue(store, "two", "c2")))  # (almost surely) within 20 ms
        assert told["c2"].wait(TIMEOUT)
    finally:
        actor.stop()
    views.close()
