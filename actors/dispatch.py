"""Cheap actors: many pykka actors run by a few shared threads.

A pykka ThreadingActor costs a thread (~24 KB of stack and kernel state, and
a thread switch per message). A WebSocket connection needs an actor of its
own (its mailbox, one message at a time, its principal private to it) but
not a thread: its handlers decode a frame and tell others, they never block.
So, as Akka's dispatchers and Erlang's schedulers do, a ``Dispatcher`` runs
any number of ``DispatchedActor``s on a few threads:

- an actor is *runnable* while its mailbox holds mail; ``put`` makes it
  runnable and hands it to the dispatcher's run queue exactly once;
- a dispatcher thread takes a runnable actor and handles up to ``BATCH`` of
  its messages, in order, then hands it back to the end of the queue if more
  mail came (so one busy actor cannot starve the others);
- an actor is never on two threads at once, so its state needs no lock.

pykka makes this a hook for actor types (``_create_actor_inbox``,
``_create_future``, ``_start_actor_loop``), as its gevent and eventlet
actors once were. Replies to ``ask`` still use ThreadingFutures. A handler
must not block on another actor: with the threads shared, a blocking
``get()`` stalls every actor behind it. Ask with a reply message instead.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import pykka
from pykka import ActorRegistry
from pykka._envelope import Envelope

log = logging.getLogger(__name__)

BATCH = 32  # messages one actor handles before the next runnable actor gets a turn


class _Mailbox:
    """An actor's inbox that makes its actor runnable when mail arrives."""

    __slots__ = ("_items", "_lock", "_runnable", "_wake")

    def __init__(self) -> None:
        self._items: deque[Envelope[Any]] = deque()
        self._lock = threading.Lock()
        self._runnable = True  # until started: start() schedules the first run
        self._wake: Callable[[], None] | None = None

    def put(self, envelope: Envelope[Any], /) -> None:
        with self._lock:
            self._items.append(envelope)
            if self._runnable:
                return
            self._runnable = True
            wake = self._wake
        if wake is not None:  # None: the actor is finished; its teardown answered all
            wake()

    def get(self) -> Envelope[Any]:
        with self._lock:
            return self._items.popleft()

    def empty(self) -> bool:
        return not self._items

    def idle_if_empty(self) -> bool:
        """Mark the actor idle if no mail is left (True), atomically with put."""
        with self._lock:
            if self._items:
                return False
            self._runnable = False
            return True

    def next_or_idle(self) -> Envelope[Any] | None:
        """The next envelope, or None after marking the actor idle (atomically,
        so a put that races with going idle schedules the actor again)."""
        with self._lock:
            if self._items:
                return self._items.popleft()
            self._runnable = False
            return None


class Dispatcher:
    """A few threads that run the DispatchedActors given to them."""

    def __init__(self, threads: int = 2, name: str = "adwd-dispatch") -> None:
        self._runnable: deque[DispatchedActor] = deque()
        self._ready = threading.Condition(threading.Lock())
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def schedule(self, actor: DispatchedActor) -> None:
        """Make ``actor`` run on one of the threads (it has mail)."""
        with self._ready:
            self._runnable.append(actor)
            self._ready.notify()

    def stop(self, timeout: float = 10.0) -> None:
        """Let the threads finish the work queued and end."""
        with self._ready:
            self._stopping = True
            self._ready.notify_all()
        for thread in self._threads:
            thread.join(timeout)

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._runnable:
                    if self._stopping:
                        return
                    self._ready.wait()
                actor = self._runnable.popleft()
            try:
                again = actor._run_slice()
            except BaseException:  # never lose a dispatcher thread
                log.exception("dispatcher thread: %s failed outside its handlers", actor)
                again = False
            if again:
                self.schedule(actor)


class DispatchedActor(pykka.Actor):
    """A pykka actor run by a shared ``Dispatcher`` instead of a thread of its own.

    Same contract as ``pykka.ThreadingActor``: ``on_start``, ``on_receive``,
    ``on_stop`` and ``on_failure`` run one at a time, in order, never
    concurrently; ``tell``/``ask`` and proxies work unchanged.
    """

    actor_inbox: _Mailbox  # made by _create_actor_inbox: pykka's ActorInbox, narrowed

    def __init__(self, dispatcher: Dispatcher) -> None:
        super().__init__()
        self._dispatcher = dispatcher
        self._started = False

    @staticmethod
    def _create_actor_inbox() -> _Mailbox:
        return _Mailbox()

    @staticmethod
    def _create_future() -> pykka.Future[Any]:
        return pykka.ThreadingFuture()

    def _start_actor_loop(self) -> None:
        mailbox = self.actor_inbox
        mailbox._wake = lambda: self._dispatcher.schedule(self)
        self._dispatcher.schedule(self)  # the first run calls on_start

    def _run_slice(self) -> bool:
        """Handle up to BATCH messages; True if the actor has more to do."""
        mailbox = self.actor_inbox
        if not self._started:
            self._started = True
            self._actor_loop_setup()
        for _ in range(BATCH):
            if self.actor_stopped.is_set():
                return self._finish(mailbox)
            envelope = mailbox.next_or_idle()
            if envelope is None:
                return False
            self._handle_envelope(envelope)
        if self.actor_stopped.is_set():
            return self._finish(mailbox)
        return True  # still runnable: go to the back of the queue

    def _finish(self, mailbox: _Mailbox) -> bool:
        # Answer what is left (asks get ActorDeadError), also mail that races
        # with the stop: the put that finds the actor idle schedules it again.
        while True:
            self._actor_loop_teardown()
            if mailbox.idle_if_empty():
                # Break the actor -> mailbox -> wake -> actor cycle, so a closed
                # connection's actor is freed at once, not at the next full GC.
                mailbox._wake = None
                return False

    def _handle_envelope(self, envelope: Envelope[Any]) -> None:
        # pykka's ThreadingActor loop body, for one message.
        try:
            response = self._handle_receive(envelope.message)
            if envelope.reply_to is not None:
                envelope.reply_to.set(response)
        except Exception:
            if envelope.reply_to is not None:
                envelope.reply_to.set_exception()
            else:
                self._handle_failure(*sys.exc_info())
                try:
                    self.on_failure(*sys.exc_info())
                except Exception:
                    self._handle_failure(*sys.exc_info())
        except BaseException:
            self._stop()
            ActorRegistry.stop_all()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.actor_urn[-8:]})"
