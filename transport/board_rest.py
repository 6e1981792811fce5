"""The board's REST calls adwd serves: the ADW list, the filtered list, DELETE.

Answers come from the projections (the projector's views) and the log; the
blocking parts (asking actors, waiting for runs to stop, removing files) run
in an executor thread, never on the loop.

DELETE ``/api/adws/<adw_id>`` cancels the adw_id's queued and running runs
through the scheduler (their process groups get SIGTERM, then SIGKILL: never
"whatever holds a port"), waits until the projections say none is left,
removes its work (``<data_dir>/agents/<adw_id>``: the runs' logs and work
directory), and records ``adw_deleted``. The ADW list leaves out an adw_id
deleted after its last run.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import shutil
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pykka

from adwd.actors.messages import Append, Cancel
from adwd.events.domain import AdwDeleted, workflow_stream
from adwd.events.errors import ErrorCode, StoreError
from adwd.events.store import EventStore, NewEvent
from adwd.events.wire import CancelWorkflowData
from adwd.projections.adws import matches
from adwd.transport.board_api import BoardCall
from adwd.transport.http_api import Reply, Unavailable, error

STOP_WAIT_S = 60.0  # how long DELETE waits for the adw_id's runs to stop
POLL_S = 0.1


class BoardRest:
    """Serves :class:`BoardCall` s (the transport's ``Backend.board``)."""

    def __init__(
        self,
        *,
        scheduler: pykka.ActorRef[pykka.Actor],
        projector: pykka.ActorRef[pykka.Actor],
        event_log: pykka.ActorRef[pykka.Actor],
        events_path: Path,
        stop_wait_s: float = STOP_WAIT_S,
    ) -> None:
        self._scheduler = scheduler
        self._projector = projector.proxy()
        self._event_log = event_log
        self._events_path = events_path
        self._data_dir = events_path.parent
        self._stop_wait_s = stop_wait_s

    async def answer(self, call: BoardCall, shown: Callable[[str], bool] | None = None) -> Reply:
        """The reply to a board call (blocking work in an executor thread).

        ``shown``: whether the caller may see an adw_id (docs/security.md), asked on
        the loop; any other is answered as if it did not exist. None: every one."""
        if shown is not None and call.name == "delete" and not shown(call.adw_id):
            return _not_found(call.adw_id)
        work = {"list": self._list, "filtered": self._filtered, "delete": self._delete}[call.name]
        loop = asyncio.get_running_loop()
        reply = await loop.run_in_executor(None, functools.partial(work, call))
        if shown is not None and call.name in ("list", "filtered") and isinstance(reply.body, dict):
            adws = [a for a in reply.body["adws"] if shown(a["adw_id"])]
            count = "count" if call.name == "list" else "total_count"
            reply = Reply(reply.status, {**reply.body, "adws": adws, count: len(adws)})
        return reply

    def _ask(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._projector, method)(*args).get(timeout=10)
        except (pykka.ActorDeadError, pykka.Timeout) as exc:
            raise Unavailable(
                "The read API did not answer: adwd is stopping or overloaded. Retry shortly."
            ) from exc

    def _deleted(self) -> dict[str, int]:
        """adw_id -> the seq of its last deletion, from the log."""
        deleted: dict[str, int] = {}
        if not self._events_path.exists():
            return deleted
        try:
            store = EventStore(self._events_path, readonly=True)
        except StoreError:
            return deleted
        try:
            for stored in store.read(types=["adw_deleted"]):
                if isinstance(stored.event, AdwDeleted):
                    deleted[stored.event.adw_id] = stored.seq
        finally:
            store.close()
        return deleted

    def _list(self, _call: BoardCall) -> Reply:
        adws = self._ask("adw_list", self._deleted())
        return Reply(HTTPStatus.OK, {"adws": adws, "count": len(adws)})

    def _filtered(self, call: BoardCall) -> Reply:
        query = dict(call.query)
        adws = [a for a in self._ask("adw_list", self._deleted()) if matches(a, query)]
        return Reply(HTTPStatus.OK, {"adws": adws, "total_count": len(adws)})

    def _active(self, adw_id: str) -> int:
        state = self._ask("adw_state", adw_id)
        if state is None:
            return 0
        return sum(1 for run in state["runs"] if run["status"] in ("queued", "running"))

    def _delete(self, call: BoardCall) -> Reply:
        adw_id = call.adw_id
        work = self._data_dir / "agents" / adw_id
        known = self._ask("adw_state", adw_id) is not None
        if not known and not work.exists():
            return _not_found(adw_id)
        active = self._active(adw_id)
        if active:
            cancel = CancelWorkflowData(adw_id=adw_id, reason="deleted from the board")
            try:
                self._scheduler.tell(Cancel(cancel, "http", "http", _drop, None))
            except pykka.ActorDeadError as exc:
                raise Unavailable("adwd is stopping; delete again once it is back.") from exc
            deadline = time.monotonic() + self._stop_wait_s
            while self._active(adw_id) and time.monotonic() < deadline:
                time.sleep(POLL_S)  # the runs' ends are events the projector folds
            if self._active(adw_id):
                return error(
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    ErrorCode.UNAVAILABLE,
                    f"The runs of {adw_id!r} did not stop within {self._stop_wait_s:g} s; "
                    "nothing was removed. Delete again shortly.",
                )
        errors: list[str] = []
        removed: list[str] = []
        if work.exists():
            try:
                shutil.rmtree(work)
                removed.append(str(work))
            except OSError as exc:
                errors.append(f"could not remove {work}: {exc.strerror or exc}")
        event = AdwDeleted(adw_id=adw_id, runs_cancelled=active, removed=removed)
        committed = threading.Event()
        with contextlib.suppress(pykka.ActorDeadError):  # stopping: the reply still says it
            self._event_log.tell(
                Append([NewEvent(workflow_stream(adw_id), event, "http")], committed.set)
            )
        # Reply once it is a fact: a list asked right after the reply leaves the adw_id out.
        committed.wait(10)
        body = {
            "success": not errors,
            "message": f"ADW {adw_id} deleted" if not errors else f"ADW {adw_id} partly deleted",
            "adw_id": adw_id,
            "runs_cancelled": active,
            "processes_killed": active > 0,
            "agents_deleted": bool(removed) or not work.exists(),
            "worktree_deleted": False,  # adwd makes no git worktrees
            "removed": removed,
            "errors": errors,
        }
        status = HTTPStatus.OK if not errors else HTTPStatus.INTERNAL_SERVER_ERROR
        return Reply(status, body)


def _not_found(adw_id: str) -> Reply:
    return error(
        HTTPStatus.NOT_FOUND,
        ErrorCode.NOT_FOUND,
        f"No run has adw_id {adw_id!r} and it has no work to remove.",
    )


def _drop(_frame: bytes) -> None:
    """No connection waits for this cancel's error frame (the HTTP reply says it all)."""
