"""Which waiting runs' connections hear a new queue position, and when.

A run's ``queue_status`` goes out when its position changes, at most once
per ``interval`` seconds per run: a change that comes sooner waits until
the interval has passed and then sends the position as it is *then* (the
latest wins, the ones in between are skipped). With a long queue every
start moves every waiting run, so without this limit a burst of N triggers
costs O(N²) frames; with it, about one per run per interval.

Pure: the caller passes the time and keeps the returned state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

RunKey = tuple[str, str]


@dataclass(frozen=True)
class Sent:
    """The last position a run's connection was told, and when."""

    position: int
    at: float


@dataclass(frozen=True)
class Changes:
    """The outcome of one pass over the queue."""

    send: list[tuple[RunKey, int]]  # (run, position) to send now
    sent: dict[RunKey, Sent]  # the new state: only runs still waiting
    wake_at: float | None  # when to look again for changes held back, if any


def queue_changes(
    waiting: Iterable[RunKey], sent: dict[RunKey, Sent], now: float, interval: float
) -> Changes:
    """Compare the queue (waiting runs, first to start first) with what each run's
    connection was last told."""
    send: list[tuple[RunKey, int]] = []
    kept: dict[RunKey, Sent] = {}
    wake_at: float | None = None
    for position, key in enumerate(waiting, start=1):
        last = sent.get(key)
        if last is not None and last.position == position:
            kept[key] = last
        elif last is not None and now < last.at + interval:  # (the same sum as wake_at)
            kept[key] = last  # moved, but told too recently: look again when allowed
            due = last.at + interval
            wake_at = due if wake_at is None else min(wake_at, due)
        else:
            kept[key] = Sent(position, now)
            send.append((key, position))
    return Changes(send, kept, wake_at)
