"""ProjectionActor: keeps the projections live and their read models saved.

Receives every committed batch from the EventLogActor, folds it into the
projections (the same code replay uses) and saves what changed with the
checkpoint in one transaction. It also answers the questions that need
projection state: queue positions, and the snapshot a joining client gets.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection
from typing import Any

import msgspec
import pykka
from msgspec import Struct

from adwd.actors.base import Actor
from adwd.actors.messages import Committed, QueueStatusAsked
from adwd.actors.queuenotify import RunKey, Sent, queue_changes
from adwd.actors.wireview import snapshot
from adwd.events.codec import encode
from adwd.events.domain import ActorFailed
from adwd.events.errors import StoreError
from adwd.events.wire import QueueStatus, QueueStatusData
from adwd.projections.adws import adw_records
from adwd.projections.bundle import Projections
from adwd.projections.queue import QueueEntry
from adwd.projections.runs import RunView
from adwd.projections.views import ViewStore

log = logging.getLogger(__name__)

# [(connection id, frame), ...] -> None, thread-safe: one hand-off to the loop per batch
Deliver = Callable[[list[tuple[str, bytes]]], None]


class _Settle(Struct, frozen=True):
    """Save the views and send queue changes for every batch folded so far."""


QUEUE_PASS_S = 0.02  # at most 50 passes over the queue per second


class _QueueTick(Struct, frozen=True):
    """Time to send the queue positions held back by the rate limit."""


class ProjectionActor(Actor):
    """Owns the live projections and the views file."""

    KIND = "projector"

    def __init__(
        self,
        *,
        projections: Projections,
        views: ViewStore,
        epoch: str,
        queue_status_interval_s: float = 1.0,
    ) -> None:
        super().__init__()
        self._p = projections
        self._views = views
        self._epoch = epoch
        self._deliver: Deliver | None = None
        self._sent: dict[RunKey, Sent] = {}  # what each waiting run's connection was told
        self._queue_interval = queue_status_interval_s
        self._timer: threading.Timer | None = None
        self._timer_at = 0.0
        self._last_pass = float("-inf")  # monotonic time of the last queue pass
        self._unsettled = False  # batches folded since the last save
        self._failures: Counter[str] = Counter()  # actor_failed events since this start
        self._save_failing = False

    def on_receive(self, message: object) -> object:
        """Fold committed batches; save and send queue changes once they settle."""
        if isinstance(message, Committed):
            if not self._unsettled:
                # Lands behind every batch already in the inbox: one save and one
                # round of queue_status for all of them (as the event log's Flush).
                self.actor_ref.tell(_Settle())
                self._unsettled = True
            self._p.apply_all(message.events)
            for stored in message.events:
                if isinstance(stored.event, ActorFailed):
                    self._failures[stored.event.actor] += 1
        elif isinstance(message, _Settle) and self._unsettled:
            self._settle()
        elif isinstance(message, _QueueTick):
            self._timer = None
            self._send_queue_changes()
        elif isinstance(message, QueueStatusAsked):
            message.reply(self.queue_status_frames(message.connection_id, message.request_id))
        return None

    def on_stop(self) -> None:
        """Save what the last batches changed (a stop can overtake their _Settle)."""
        if self._timer is not None:
            self._timer.cancel()
        if self._unsettled:
            self._save()

    def _settle(self) -> None:
        self._unsettled = False
        self._save()
        self._send_queue_changes()

    def _save(self) -> None:
        """Save the views; a failure (disk full) is not fatal.

        The views are a cache of the log: the live projections stay right in
        memory, the next save writes everything again, and a restart catches
        up from the last checkpoint that did commit (it is saved in the same
        transaction as the views).
        """
        try:
            self._views.save(self._p, self._epoch)
        except StoreError as exc:
            if not self._save_failing:
                log.warning("views not saved (serving from memory; retried): %s", exc)
            self._save_failing = True
        else:
            if self._save_failing:
                log.info("views saved again")
            self._save_failing = False

    def attach(self, deliver: Deliver) -> None:
        """Where to send per-connection messages (set by the transport when it starts)."""
        self._deliver = deliver

    def queue_status_frames(self, connection_id: str, request_id: str | None = None) -> list[bytes]:
        """``queue_status`` for each run this connection has waiting, or one for a new run."""
        now = time.time()
        mine = [e for e in self._p.queue.entries(now) if e.connection_id == connection_id]
        if mine:
            return [_frame(e, request_id) for e in mine]
        data = QueueStatusData(
            queue_length=len(self._p.queue.waiting),
            estimated_wait_time=self._p.queue.wait_for_new(now),
            position=0,
        )
        return [encode(QueueStatus(data, request_id=request_id))]

    def snapshot(self, adw_ids: Collection[str] | None) -> tuple[int, list[bytes]]:
        """The seq the projections are at, and the current state of the runs followed."""
        return self._p.seq, snapshot(self._p.runs.runs.values(), adw_ids)

    def adw_state(self, adw_id: str) -> dict[str, Any] | None:
        """What ``GET /api/adws/<adw_id>`` answers: its runs and its card's stage."""
        if self._unsettled:
            self._settle()  # the answer comes from views.db: bring it up to date first
        views = self._views.runs_of(adw_id)
        if not views:
            return None
        latest = views[-1]
        moved = [v.stage for v in views if v.stage]  # views come in last_seq order
        return {
            "adw_id": adw_id,
            "current_stage": moved[-1] if moved else "backlog",
            "status": latest.status,
            "workflow_name": latest.key[1],
            "seq": self._p.seq,
            "runs": [_run_json(v) for v in views],
        }

    def adw_list(self, deleted: dict[str, int] | None = None) -> list[dict[str, Any]]:
        """What ``GET /api/adws/list`` answers: every adw_id, as the board shows it."""
        if self._unsettled:
            self._settle()
        return adw_records(self._views.all_runs(), deleted)

    def overview(self) -> dict[str, Any]:
        """What ``GET /api/runs`` answers: runs in memory, the queue, metrics."""
        now = time.time()
        return {
            "seq": self._p.seq,
            "runs": [
                _run_json(v) for v in sorted(self._p.runs.runs.values(), key=lambda v: v.last_seq)
            ],
            "queue": [
                {
                    "adw_id": e.adw_id,
                    "workflow_type": e.workflow_type,
                    "position": e.position,
                    "estimated_wait_time": e.estimated_wait_s,
                }
                for e in self._p.queue.entries(now)
            ],
            "metrics": self._p.metrics.summary(),
        }

    def seq(self) -> int:
        """The seq the projections are at."""
        return self._p.seq

    def health(self) -> dict[str, Any]:
        """What /health reports from the log: its seq and the actor failures
        recorded since this start, by kind of actor."""
        return {"seq": self._p.seq, "actor_failures": dict(self._failures)}

    def _send_queue_changes(self) -> None:
        """Tell each waiting run's connection when its position changed (rate-limited)."""
        if self._deliver is None:
            return
        now = time.monotonic()
        # A pass costs O(queue length); under a burst of triggers there is a settle
        # every few ms. With a rate limit in force, passes come at most every
        # QUEUE_PASS_S (the held-back changes are sent by the next one).
        pass_every = min(self._queue_interval, QUEUE_PASS_S)
        if now - self._last_pass < pass_every:
            self._wake(self._last_pass + pass_every, now)
            return
        self._last_pass = now
        queue = self._p.queue
        changes = queue_changes(queue.waiting, self._sent, now, self._queue_interval)
        self._sent = changes.sent
        if changes.wake_at is not None:
            self._wake(changes.wake_at, now)
        if not changes.send:
            return  # most passes: the estimate (a simulation of the queue) is not needed
        waits = queue.waits(time.time())
        length = len(queue.waiting)
        frames = []
        for key, position in changes.send:
            connection_id = queue.waiting[key]
            if connection_id is not None:
                entry = QueueEntry(*key, connection_id, position, length, waits[position - 1])
                frames.append((connection_id, _frame(entry)))
        if frames:
            self._deliver(frames)

    def _wake(self, at: float, now: float) -> None:
        """Look at the queue again at monotonic time ``at`` (one timer, the earliest)."""
        if self._timer is not None:
            if self._timer_at <= at:
                return
            self._timer.cancel()
        self._timer, self._timer_at = threading.Timer(max(0.0, at - now), self._tick), at
        self._timer.daemon = True
        self._timer.start()

    def _tick(self) -> None:  # on the timer's thread: only a tell
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.tell(_QueueTick())


def _frame(entry: QueueEntry, request_id: str | None = None) -> bytes:
    return encode(
        QueueStatus(
            QueueStatusData(
                queue_length=entry.queue_length,
                estimated_wait_time=entry.estimated_wait_s,
                position=entry.position,
                adw_id=entry.adw_id,
            ),
            request_id=request_id,
        )
    )


def _run_json(view: RunView) -> dict[str, Any]:
    adw_id, workflow_type = view.key
    return {
        "adw_id": adw_id,
        "workflow_name": workflow_type,
        "status": view.status,
        "stage": view.stage or "backlog",
        "progress_percent": view.progress_percent,
        "current_step": view.current_step,
        "message": view.message,
        "logs_path": view.request.logs_path,
        "queued_seq": view.queued_seq,
        "last_seq": view.last_seq,
        "duration_s": view.duration_s,
        "resource_usage": msgspec.structs.asdict(view.resource_usage)
        if view.resource_usage
        else None,
    }
