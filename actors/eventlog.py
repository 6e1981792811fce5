"""EventLogActor: the single writer of the event log.

Appends queue up as pending; the first one of a group tells the actor a
:class:`Flush`, which lands behind every append already in the inbox. So one
transaction commits whatever queued while the previous commit ran (group
commit), with no timer and no reach into pykka's inbox. After the commit
the batch goes to every subscriber in seq order: persist, then publish.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pykka

from adwd.actors.base import Actor
from adwd.actors.messages import Append, Committed, Flush
from adwd.events.errors import StoreError
from adwd.events.store import EventStore, NewEvent, StoredEvent

log = logging.getLogger(__name__)

Subscriber = Callable[[Sequence[StoredEvent]], None]


class EventLogActor(Actor):
    """Owns the write connection; commits in groups; publishes committed batches."""

    KIND = "event_log"

    def __init__(
        self,
        store: EventStore,
        subscribers: Sequence[Subscriber] = (),
        on_fatal: Callable[[BaseException], None] | None = None,
        leading: Sequence[Subscriber] = (),
        on_commit: Callable[[float, int], None] | None = None,
    ) -> None:
        super().__init__()
        self._store = store
        # ``leading`` ones hear of a batch before any other, clients included: the
        # scheduler decides on what a client has seen (a completed plan, an error_id).
        self._leading = list(leading)
        self._subscribers = list(subscribers)
        self._pending: list[NewEvent] = []
        self._callbacks: list[Callable[[], None]] = []  # of the appends pending
        self._on_fatal = on_fatal
        self._on_commit = on_commit  # (seconds, events) of each commit: for monitoring

    def on_receive(self, message: object) -> object:
        """Queue appends; commit and publish on Flush."""
        if isinstance(message, Append):
            if not self._pending:
                self.actor_ref.tell(Flush())
            self._pending.extend(message.events)
            if message.committed is not None:
                self._callbacks.append(message.committed)
        elif isinstance(message, Flush):
            self._flush()
        return None

    def subscribe(self, subscriber: Subscriber, *, first: bool = False) -> None:
        """Receive every batch committed from now on (call through a proxy).

        ``first`` puts it before the others: delivery to clients goes first, so
        messages derived from projections never overtake the event's own.
        """
        if first:
            self._subscribers.insert(0, subscriber)
        else:
            self._subscribers.append(subscriber)

    def last_seq(self) -> int:
        """The seq of the newest committed event, after committing what is pending."""
        self._flush()
        return self._store.last_seq()

    def _flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        callbacks, self._callbacks = self._callbacks, []
        started = time.perf_counter()
        try:
            stored = self._store.append(batch)
        except StoreError as exc:
            # A log that cannot be written cannot keep any promise: stop the service.
            log.critical("%s", exc)
            if self._on_fatal is not None:
                self._on_fatal(exc)
            raise
        if self._on_commit is not None:
            self._on_commit(time.perf_counter() - started, len(stored))
        for subscriber in (*self._leading, *self._subscribers):
            try:
                subscriber(stored)
            except Exception:
                log.exception("subscriber %r failed on seq %d..", subscriber, stored[0].seq)
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("a commit callback failed on seq %d..", stored[0].seq)

    def on_stop(self) -> None:
        """Commit whatever is still pending before the actor ends."""
        self._flush()


class Relay:
    """A subscriber for an actor that starts after the log: batches committed
    before :meth:`attach` are kept and handed over first, so it misses none."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._target: pykka.ActorRef[Any] | None = None
        self._held: list[StoredEvent] = []

    def __call__(self, batch: Sequence[StoredEvent]) -> None:
        with self._lock:
            if self._target is None:
                self._held.extend(batch)
                return
            target = self._target
        with contextlib.suppress(pykka.ActorDeadError):  # it stopped first, at shutdown
            target.tell(Committed(batch))

    def attach(self, target: pykka.ActorRef[Any]) -> None:
        """From now on tell ``target`` each batch, after the ones held so far."""
        with self._lock:
            if self._held:
                target.tell(Committed(self._held))
            self._target, self._held = target, []
