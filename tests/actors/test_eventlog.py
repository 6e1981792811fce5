"""EventLogActor: group commit, persist-then-publish, flush on last_seq and on stop."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pykka
import pytest

from adwd.actors.eventlog import EventLogActor
from adwd.actors.messages import Append
from adwd.events.domain import ServiceStopped
from adwd.events.errors import StoreError
from adwd.events.store import EventStore, NewEvent, StoredEvent

TIMEOUT = 10.0


class Recorder:
    """A subscriber that records batches; it can hold the actor inside the first one."""

    def __init__(self, expected: int = 0, *, hold_first: bool = False) -> None:
        self.batches: list[list[StoredEvent]] = []
        self.expected = expected
        self.all_seen = threading.Event()
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()
        self._lock = threading.Lock()

    def __call__(self, batch: Sequence[StoredEvent]) -> None:
        self.entered.set()
        assert self.release.wait(TIMEOUT)
        with self._lock:
            self.batches.append(list(batch))
            if sum(map(len, self.batches)) >= self.expected:
                self.all_seen.set()

    @property
    def events(self) -> list[StoredEvent]:
        return [e for b in self.batches for e in b]


def _append(reason: str) -> Append:
    return Append([NewEvent("system", ServiceStopped(reason=reason))])


Spawn = Callable[..., pykka.ActorRef[EventLogActor]]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Start EventLogActors; every one is stopped when the test ends."""
    refs: list[pykka.ActorRef[EventLogActor]] = []

    def _spawn(*args: Any, **kwargs: Any) -> pykka.ActorRef[EventLogActor]:
        refs.append(EventLogActor.start(*args, **kwargs))
        return refs[-1]

    try:
        yield _spawn
    finally:
        for ref in refs:
            ref.stop(timeout=TIMEOUT)


def test_concurrent_appends_are_group_committed_in_order(store: EventStore, spawn: Spawn) -> None:
    threads, per_thread = 5, 100
    recorder = Recorder(threads * per_thread, hold_first=True)
    ref = spawn(store, [recorder])

    def tell_many(t: int) -> None:
        for i in range(per_thread):
            ref.tell(_append(f"{t}:{i}"))

    ref.tell(_append("first"))
    assert recorder.entered.wait(TIMEOUT)  # the actor is inside its first publish
    workers = [threading.Thread(target=tell_many, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(TIMEOUT)
    recorder.release.set()
    assert recorder.all_seen.wait(TIMEOUT)

    events = recorder.events
    assert len(events) == threads * per_thread + 1
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert max(len(b) for b in recorder.batches) > 1
    assert len(recorder.batches) < 50
    assert list(store.read()) == events, "published exactly what was committed"
    for t in range(threads):
        mine = [e.event.reason for e in events if e.event.reason.startswith(f"{t}:")]  # type: ignore[union-attr]
        assert mine == [f"{t}:{i}" for i in range(per_thread)], "one sender's order kept"


def test_one_append_of_several_events_is_one_batch(store: EventStore, spawn: Spawn) -> None:
    recorder = Recorder(3)
    ref = spawn(store, [recorder])
    ref.tell(Append([NewEvent("system", ServiceStopped(reason=r)) for r in "abc"]))
    assert recorder.all_seen.wait(TIMEOUT)
    assert [[e.event.reason for e in b] for b in recorder.batches] == [["a", "b", "c"]]  # type: ignore[union-attr]


def test_last_seq_commits_what_is_pending(store: EventStore, spawn: Spawn) -> None:
    recorder = Recorder(hold_first=True)
    ref = spawn(store, [recorder])
    ref.tell(_append("first"))
    assert recorder.entered.wait(TIMEOUT)
    ref.tell(_append("second"))
    ref.tell(_append("third"))
    answer = ref.proxy().last_seq()  # queued before the Flush the second append asks for
    recorder.release.set()
    assert answer.get(timeout=TIMEOUT) == 3
    assert [e.seq for e in recorder.events] == [1, 2, 3]


def test_stop_commits_what_is_pending(store: EventStore, spawn: Spawn) -> None:
    recorder = Recorder(hold_first=True)
    ref = spawn(store, [recorder])
    ref.tell(_append("first"))
    assert recorder.entered.wait(TIMEOUT)
    ref.tell(_append("second"))
    stopped = ref.stop(block=False)  # lands before the second append's Flush
    recorder.release.set()
    assert stopped.get(timeout=TIMEOUT) is True
    assert [e.event.reason for e in store.read()] == ["first", "second"]  # type: ignore[union-attr]
    assert [e.seq for e in recorder.events] == [1, 2]


def test_subscribe_through_proxy_and_a_failing_subscriber_does_not_stop_others(
    store: EventStore, spawn: Spawn
) -> None:
    def broken(batch: Sequence[StoredEvent]) -> None:
        raise RuntimeError("subscriber bug")

    late = Recorder(2)
    ref = spawn(store, [broken])
    ref.proxy().subscribe(late).get(timeout=TIMEOUT)
    ref.tell(_append("a"))
    ref.tell(_append("b"))
    assert late.all_seen.wait(TIMEOUT)
    assert [e.seq for e in late.events] == [1, 2]
    assert ref.is_alive()


def test_unwritable_log_calls_on_fatal(tmp_path: Path, spawn: Spawn) -> None:
    EventStore(tmp_path / "ro.db").close()
    readonly = EventStore(tmp_path / "ro.db", readonly=True)
    failures: list[BaseException] = []
    fatal = threading.Event()

    def on_fatal(exc: BaseException) -> None:
        failures.append(exc)
        fatal.set()

    try:
        ref = spawn(readonly, on_fatal=on_fatal)
        ref.tell(_append("lost"))
        assert fatal.wait(TIMEOUT)
        assert isinstance(failures[0], StoreError)
        assert "Cannot append" in str(failures[0])
        assert ref.actor_stopped.wait(TIMEOUT), "a log it cannot write stops the actor"
    finally:
        readonly.close()
