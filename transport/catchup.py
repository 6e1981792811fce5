"""A connection's catch-up, run on the loop: read the log off the loop, send with
backpressure, then let the router go live.

The ConnectionActor decides *that* a connection catches up (on connect, on a
subscribe); this coroutine does the I/O, so no actor thread ever waits on a
slow client. Reads happen in the default executor (SQLite never runs on the
loop); sends await the socket's drain.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import queue
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from adwd.actors.resume import replay_frames, unrecoverable
from adwd.actors.router import Router
from adwd.events.codec import encode
from adwd.events.errors import StoreError
from adwd.events.store import EventStore, StoredEvent
from adwd.events.wire import Subscribed, SubscribeData, SubscribedData

CHUNK = 1000  # events read per executor hop

Snapshot = Callable[[frozenset[str] | None], tuple[int, list[bytes]]]


MAX_IDLE = 64  # readers kept between catch-ups: enough for a burst of handshakes


class Readers:
    """Read-only connections to the log, reused from one catch-up to the next.

    Opening one per catch-up (a SQLite open, its schema read, a close) was
    12% of the GIL when many clients connect at once. Used from executor
    threads: each catch-up borrows a reader and gives it back; at most as
    many exist as catch-ups ever ran at once.
    """

    def __init__(self, events_path: Path) -> None:
        self._path = events_path
        self._idle: queue.SimpleQueue[EventStore] = queue.SimpleQueue()
        self._closed = False
        # The threads that use the readers (SQLite calls are blocking).
        self._pool = concurrent.futures.ThreadPoolExecutor(6, thread_name_prefix="adwd-catchup")

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        """Run a reader's call on the readers' threads."""
        return self._pool.submit(fn, *args)

    def borrow(self) -> EventStore:
        """An idle reader, or a new one (raises StoreError with no log yet)."""
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            return EventStore(self._path, readonly=True)

    def give_back(self, store: EventStore) -> None:
        """Keep a reader for the next catch-up (closed if the pool was closed, or
        if MAX_IDLE are kept already: a burst of connections must not leave a
        reader, two files and a page cache behind per catch-up it ran at once)."""
        if self._idle.qsize() >= MAX_IDLE:
            store.close()
            return
        self._idle.put(store)
        if self._closed:
            self.close()

    def close(self) -> None:
        """Close every idle reader; readers given back later are closed then."""
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


async def catch_up(
    router: Router,
    connection_id: str,
    want: SubscribeData,
    *,
    explicit: bool,
    request_id: str | None,
    readers: Readers,
    snapshot: Snapshot,
    visible: frozenset[str] | None = None,
) -> None:
    """Send what the connection missed (or the current state), then go live.

    ``visible``: the only runs this connection may see (a scoped principal,
    docs/security.md); None: every run."""
    loop = asyncio.get_running_loop()

    def off_loop(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))

    if explicit and want.since is None and router.cursor(connection_id):
        # A subscribe without since on a connection already caught up: go on from
        # where it is (the filter may change), with no gap and no duplicate.
        want = msgspec.structs.replace(want, since=router.cursor(connection_id), epoch=None)
    adw_ids = frozenset(want.adw_ids) if want.adw_ids is not None else None
    # What is sent: what the client asked for, within what it may see; what it
    # follows live stays what it asked for (the router applies its scope).
    shown = adw_ids if visible is None else (visible if adw_ids is None else adw_ids & visible)
    upto = 0
    store: EventStore | None = None
    in_flight: concurrent.futures.Future[Any] | None = None

    async def reading(fn: Callable[..., Any], *args: Any) -> Any:
        # The reader's own calls: tracked, so a cancelled catch-up (shutdown,
        # the client gone) never hands back a reader a thread is still using.
        nonlocal in_flight
        in_flight = readers.submit(fn, *args)
        return await asyncio.wrap_future(in_flight)

    try:  # whatever happens, the connection goes live at the end
        store = await reading(readers.borrow)
        last, epoch, first = await reading(_position, store)
        why = unrecoverable(want, epoch, last, first)
        if why is None:
            upto, frames = int(want.since or 0), []
        else:
            upto, frames = await off_loop(snapshot, shown)
        if explicit:
            data = SubscribedData(
                epoch=epoch,
                recovered=why is None,
                resume_from=upto,
                last_seq=last,
                message=why or f"replaying the events after seq {upto}",
            )
            frames.insert(0, encode(Subscribed(data, request_id=request_id)))
        live = await router.send_frames(connection_id, frames)
        # Read on only while the client is there: a big log is not read for nobody.
        while live and (chunk := await reading(_read, store, upto)):
            upto = chunk[-1].seq
            service = router.monitoring(connection_id)  # alerts: monitor:read
            frames = replay_frames(chunk, shown, service=service)
            live = await router.send_frames(connection_id, frames)
    except StoreError:
        pass  # no log yet: nothing to catch up on
    finally:
        if in_flight is not None and not in_flight.done():
            # A thread still reads: the reader goes back once it is done with it.
            in_flight.add_done_callback(functools.partial(_give_back_after, readers, store))
        elif store is not None:
            readers.give_back(store)
        router.resume(connection_id, upto, follows=adw_ids)


def _give_back_after(
    readers: Readers, store: EventStore | None, done: concurrent.futures.Future[Any]
) -> None:
    """Give back the reader a cancelled catch-up was using (or had just borrowed)."""
    if store is None and not done.cancelled() and done.exception() is None:
        result = done.result()
        store = result if isinstance(result, EventStore) else None
    if store is not None:
        readers.give_back(store)


def _position(store: EventStore) -> tuple[int, str, int]:
    return store.last_seq(), store.epoch, store.first_seq()


def _read(store: EventStore, after: int) -> list[StoredEvent]:
    return list(store.read(after, limit=CHUNK))
