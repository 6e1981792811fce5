"""DispatchedActor: many actors on a few threads, each still one at a time and in order."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pykka
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adwd.actors.dispatch import DispatchedActor, Dispatcher

T = 10.0


class Recorder(DispatchedActor):
    def __init__(self, dispatcher: Dispatcher, log: list[tuple[int, int, str]], n: int) -> None:
        super().__init__(dispatcher)
        self._log, self._n = log, n
        self._busy = False
        self.failed: list[str] = []

    def on_receive(self, message: Any) -> Any:
        assert not self._busy, "two messages of one actor ran at once"
        self._busy = True
        try:
            if message == "boom":
                raise ValueError("boom")
            self._log.append((self._n, message, threading.current_thread().name))
            return message
        finally:
            self._busy = False

    def on_failure(self, *exc_info: object) -> None:
        self.failed.append(type(exc_info[1]).__name__)


@pytest.fixture
def dispatcher() -> Iterator[Dispatcher]:
    d = Dispatcher(threads=2, name="test-dispatch")
    yield d
    pykka.ActorRegistry.stop_all()
    d.stop()


@settings(max_examples=20, deadline=None)
@given(actors=st.integers(1, 40), messages=st.integers(1, 80))
def test_each_actor_handles_its_messages_in_order(actors: int, messages: int) -> None:
    dispatcher = Dispatcher(threads=2, name="test-order")
    try:
        log: list[tuple[int, int, str]] = []
        refs = [Recorder.start(dispatcher, log, n) for n in range(actors)]
        for i in range(messages):
            for ref in refs:
                ref.tell(i)
        for ref in refs:
            assert ref.ask("end", timeout=T) == "end"
        for n in range(actors):
            assert [m for a, m, _ in log if a == n and m != "end"] == list(range(messages))
        assert {t for *_, t in log} <= {"test-order-0", "test-order-1"}
        for ref in refs:
            ref.stop()
    finally:
        dispatcher.stop()


def test_a_failing_actor_stops_alone(dispatcher: Dispatcher) -> None:
    log: list[tuple[int, int, str]] = []
    bad, good = Recorder.start(dispatcher, log, 0), Recorder.start(dispatcher, log, 1)
    bad.tell("boom")
    assert good.ask(1, timeout=T) == 1
    # Mail queued behind the failure, or sent after it, finds the actor dead.
    with pytest.raises(pykka.ActorDeadError):
        bad.ask(2, timeout=T)
    assert good.ask(3, timeout=T) == 3


def test_stop_answers_pending_asks_and_frees_the_actor(dispatcher: Dispatcher) -> None:
    log: list[tuple[int, int, str]] = []
    ref = Recorder.start(dispatcher, log, 0)
    futures = [ref.ask(i, block=False) for i in range(100)]
    ref.stop()
    assert [f.get(timeout=T) for f in futures] == list(range(100))
    assert not ref.is_alive()
    assert ref not in pykka.ActorRegistry.get_all()


def test_thousands_of_actors_use_only_the_dispatcher_threads(dispatcher: Dispatcher) -> None:
    before = threading.active_count()
    log: list[tuple[int, int, str]] = []
    refs = [Recorder.start(dispatcher, log, n) for n in range(2000)]
    assert threading.active_count() == before
    assert [r.ask(n, timeout=T) for n, r in enumerate(refs)] == list(range(2000))
    for ref in refs:
        ref.stop()
