"""Resuming a connection: what a catch-up must send. Pure decisions.

The loop side (``transport/catchup.py``) does the reading and the sending.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from adwd.actors.wireview import wire_messages
from adwd.events.store import StoredEvent
from adwd.events.wire import SubscribeData


def unrecoverable(want: SubscribeData, epoch: str, last: int, first: int) -> str | None:
    """Why the events after ``want.since`` cannot be replayed, or None if they can."""
    if want.since is None:
        return "no since given: sending the current state"
    if want.epoch is not None and want.epoch != epoch:
        return (
            f"the log was restored or replaced (epoch {want.epoch} is now {epoch}): "
            "sending the current state instead of the missed events"
        )
    if want.since > last:
        return (
            f"seq {want.since} is beyond this log's last seq {last}: "
            "sending the current state instead of the missed events"
        )
    if first > 1 and want.since < first - 1:
        return (
            f"the log no longer holds the events after seq {want.since}: "
            "sending the current state instead"
        )
    return None


def replay_frames(
    events: Iterable[StoredEvent], adw_ids: Collection[str] | None, *, service: bool = True
) -> list[bytes]:
    """What a follower of ``adw_ids`` (None: every run) sees of these events;
    ``service``: with the news of the service (alerts; monitor:read).

    Replies addressed to one connection (trigger_response, cancel_response) are
    never replayed: the router delivers each exactly once, live.
    """
    frames = []
    for stored in events:
        for target, adw_id, frame in wire_messages(stored):
            if target is not None:
                continue  # a reply: delivered once, live
            if service if adw_id is None else adw_ids is None or adw_id in adw_ids:
                frames.append(frame)
    return frames
