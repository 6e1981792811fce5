"""Who follows health_status, performance_metrics and connection_quality, how often,
and each connection's quality measurements. Loop thread only.

The MonitorActor hands the loop a :class:`Report` after each sample; the
report's frames, encoded once, go to every connection whose interval has
come round (and health_status to every health follower at once when the
status changed). A connection follows health at the service's
``health_interval_s`` and performance at its ``performance_interval_s``
unless it chose otherwise: ``?health=S&performance=S`` on the URL or
``health_interval_s`` / ``performance_interval_s`` in a ``subscribe``
(0 turns one off); the same for ``connection_quality`` (``quality``,
``quality_interval_s``), which is each connection's own, assessed by
``actors.quality`` from what its socket did. Intervals shorter than the
sampling interval get one message per sample.
"""

from __future__ import annotations

import datetime as dt
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from websockets.asyncio.server import ServerConnection

from adwd.actors.monitor import Report
from adwd.actors.quality import Measured, assess
from adwd.actors.router import Router
from adwd.events.codec import encode
from adwd.events.wire import ConnectionQuality, ConnectionQualityData

MAX_INTERVAL_S = 86400.0
# Frames one report sends at most: each is a socket write on the loop (~20 us), so
# 20,000 connections due at once would hold the loop for ~0.4 s; 4,000 hold it ~80 ms.
# The rest wait for the next report (their due times are kept), and the next report
# starts where this one stopped, so none waits for long.
MAX_PER_REPORT = 4000
RECONNECT_WINDOW_S = 600.0  # connections of one address within this count as reconnects
Intervals = tuple[float | None, float | None, float | None]  # health, performance, quality


@dataclass
class _Follow:
    ws: ServerConnection
    health_s: float
    performance_s: float
    quality_s: float
    reconnects: int = 0
    next_health: float = 0.0  # due at the next report after this (monotonic)
    next_performance: float = 0.0
    next_quality: float = 0.0
    bytes_in: int = 0  # received, since the last assessment
    last_at: float = field(default_factory=time.monotonic)  # of the last assessment
    last_out: tuple[int, int] = (0, 0)  # router's (bytes, frames) at the last assessment


class Followers:
    """Per-connection intervals and the latest report."""

    def __init__(
        self,
        router: Router,
        *,
        health_s: float,
        performance_s: float,
        quality_s: float,
        ping_timeout_s: float,
        max_outbound_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._router = router
        self._defaults = (health_s, performance_s, quality_s)
        self._ping_timeout_s = ping_timeout_s
        self._max_outbound = max_outbound_bytes
        self._clock = clock
        self._follows: dict[str, _Follow] = {}
        self._connects: dict[str, deque[float]] = {}  # address -> recent connect times
        self.report: Report | None = None  # the latest sample's, for /health
        self._cursor = 0  # where the next report starts (see MAX_PER_REPORT)

    def add(self, cid: str, ws: ServerConnection, chosen: Intervals) -> None:
        """A new connection: the service's intervals unless it gave its own."""
        health, performance, quality = (
            default if mine is None else mine
            for mine, default in zip(chosen, self._defaults, strict=True)
        )
        now = self._clock()
        address = ws.remote_address[0] if ws.remote_address else ""
        times = self._connects.setdefault(address, deque())
        while times and now - times[0] > RECONNECT_WINDOW_S:
            times.popleft()
        times.append(now)
        self._follows[cid] = _Follow(
            ws, health, performance, quality, reconnects=len(times) - 1, last_at=now
        )

    def choose(self, cid: str, chosen: Intervals) -> None:
        """A subscribe's choice; None keeps the current interval. Due at the next report."""
        follow = self._follows.get(cid)
        if follow is None:
            return
        health, performance, quality = chosen
        if health is not None:
            follow.health_s, follow.next_health = health, 0.0
        if performance is not None:
            follow.performance_s, follow.next_performance = performance, 0.0
        if quality is not None:
            follow.quality_s, follow.next_quality = quality, 0.0

    def received(self, cid: str, size: int) -> None:
        """A frame of ``size`` bytes came in on this connection."""
        follow = self._follows.get(cid)
        if follow is not None:
            follow.bytes_in += size

    def remove(self, cid: str) -> None:
        """A closed connection."""
        self._follows.pop(cid, None)

    def update(self, report: Report) -> None:
        """A new sample: send its frames to the connections they are due to."""
        self.report = report
        now = self._clock()
        out: list[tuple[str, bytes]] = []  # about the service: readers of runs only
        own: list[tuple[str, bytes]] = []  # about the connection itself
        if report.changed:  # every health follower is due at once
            for f in self._follows.values():
                f.next_health = 0.0
        items = list(self._follows.items())
        start = self._cursor % len(items) if items else 0
        for n, (cid, f) in enumerate(items[start:] + items[:start]):
            if len(out) + len(own) >= MAX_PER_REPORT:
                self._cursor = start + n
                break
            if f.health_s > 0 and now >= f.next_health:
                out.append((cid, report.health_frame))
                f.next_health = now + f.health_s
            if f.performance_s > 0 and now >= f.next_performance:
                out.append((cid, report.performance_frame))
                f.next_performance = now + f.performance_s
            if f.quality_s > 0 and now >= f.next_quality:
                own.append((cid, self._quality(cid, f, now)))
                f.next_quality = now + f.quality_s
        if out:
            # With authentication on, only to principals with monitor:read (or admin):
            # the service's load and health help an attacker time an attack.
            self._router.send_monitor(out)
        if own:
            self._router.send_each(own)

    def _quality(self, cid: str, f: _Follow, now: float) -> bytes:
        """Assess the connection since its last assessment; the connection_quality frame."""
        bytes_out, frames_out, unsent = self._router.traffic(cid)
        ws = f.ws
        measured = Measured(
            latency_s=ws.latency,
            overdue_s=_overdue(ws, now),
            ping_timeout_s=self._ping_timeout_s,
            bytes_moved=f.bytes_in + bytes_out - f.last_out[0],
            seconds=now - f.last_at,
            messages_out=frames_out - f.last_out[1],
            unsent_bytes=unsent,
            max_outbound_bytes=self._max_outbound,
            compressed=bool(ws.protocol.extensions),
            reconnects=f.reconnects,
        )
        f.bytes_in, f.last_at, f.last_out = 0, now, (bytes_out, frames_out)
        q = assess(measured)
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        data = ConnectionQualityData(
            latency=q.latency,
            bandwidth=q.bandwidth,
            reliability_score=q.reliability_score,
            last_measurement=stamp,
            suggestions=q.suggestions,
        )
        return encode(ConnectionQuality(data))


def _overdue(ws: ServerConnection, now: float) -> float:
    """How long the oldest ping unanswered has waited (0: none). websockets keeps its
    pings waiting for a pong in ``pending_pings`` (``pong_waiters`` before 15): id ->
    (future, send time on the loop's clock, time.monotonic)."""
    pending = getattr(ws, "pending_pings", None)
    if pending is None:
        pending = getattr(ws, "pong_waiters", None)
    if not pending:
        return 0.0
    try:
        sent = float(min(entry[1] for entry in pending.values()))
    except (TypeError, IndexError, ValueError):  # another shape: not measurable here
        return 0.0
    return max(0.0, now - sent)


def interval_params(path: str) -> Intervals:
    """``health``, ``performance`` and ``quality`` (seconds) from a WebSocket URL's query;
    None if absent or not a number in [0, 86400] (a bad value is ignored, as ``since`` is)."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)

    def one(name: str) -> float | None:
        raw = query.get(name, [""])[0]
        try:
            value = float(raw)
        except ValueError:
            return None
        return value if 0 <= value <= MAX_INTERVAL_S else None

    return one("health"), one("performance"), one("quality")
