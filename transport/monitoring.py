"""Who follows health_status and performance_metrics, and how often. Loop thread only.

The MonitorActor hands the loop a :class:`Report` after each sample; the
report's frames, encoded once, go to every connection whose interval has
come round (and health_status to every health follower at once when the
status changed). A connection follows health at the service's
``health_interval_s`` and performance at its ``performance_interval_s``
unless it chose otherwise: ``?health=S&performance=S`` on the URL or
``health_interval_s`` / ``performance_interval_s`` in a ``subscribe``
(0 turns one off). Intervals shorter than the sampling interval get one
message per sample.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from adwd.actors.monitor import Report

MAX_INTERVAL_S = 86400.0


@dataclass
class _Follow:
    health_s: float
    performance_s: float
    next_health: float = 0.0  # due at the next report after this (monotonic)
    next_performance: float = 0.0


class Followers:
    """Per-connection intervals and the latest report."""

    def __init__(
        self,
        send_each: Callable[[Sequence[tuple[str, bytes]]], None],
        *,
        health_s: float,
        performance_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send_each = send_each
        self._health_s, self._performance_s = health_s, performance_s
        self._clock = clock
        self._follows: dict[str, _Follow] = {}
        self.report: Report | None = None  # the latest sample's, for /health

    def add(self, cid: str, health_s: float | None, performance_s: float | None) -> None:
        """A new connection: the service's intervals unless it gave its own."""
        self._follows[cid] = _Follow(
            self._health_s if health_s is None else health_s,
            self._performance_s if performance_s is None else performance_s,
        )

    def choose(self, cid: str, health_s: float | None, performance_s: float | None) -> None:
        """A subscribe's choice; None keeps the current interval. Due at the next report."""
        follow = self._follows.get(cid)
        if follow is None:
            return
        if health_s is not None:
            follow.health_s, follow.next_health = health_s, 0.0
        if performance_s is not None:
            follow.performance_s, follow.next_performance = performance_s, 0.0

    def remove(self, cid: str) -> None:
        """A closed connection."""
        self._follows.pop(cid, None)

    def update(self, report: Report) -> None:
        """A new sample: send its frames to the connections they are due to."""
        self.report = report
        now = self._clock()
        out: list[tuple[str, bytes]] = []
        for cid, f in self._follows.items():
            if f.health_s > 0 and (now >= f.next_health or report.changed):
                out.append((cid, report.health_frame))
                f.next_health = now + f.health_s
            if f.performance_s > 0 and now >= f.next_performance:
                out.append((cid, report.performance_frame))
                f.next_performance = now + f.performance_s
        if out:
            self._send_each(out)


def interval_params(path: str) -> tuple[float | None, float | None]:
    """``health`` and ``performance`` (seconds) from a WebSocket URL's query; None if
    absent or not a number in [0, 86400] (a bad value is ignored, as ``since`` is)."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)

    def one(name: str) -> float | None:
        raw = query.get(name, [""])[0]
        try:
            value = float(raw)
        except ValueError:
            return None
        return value if 0 <= value <= MAX_INTERVAL_S else None

    return one("health"), one("performance")
