"""MonitorActor: one per service; samples it, keeps the alerts, reports health.

Every ``interval_s`` a ticker thread tells it ``Tick``; it then reads the
process and its workflow children (psutil), the event log's commit figures
(``Telemetry.commits``), the data directory's disk, the connection count and
the core actors' liveness, plus what it folded from committed events (queue,
running runs, recent failures: ``projections.health``). The pure rules
(``actors.health``, ``actors.alerts``) turn the sample into alert fires and
resolves, which it appends to the log as ``alert_fired`` / ``alert_resolved``
(so ``adwd replay`` shows why an alert fired, and clients get ``alert`` from
the committed event like every other event-derived message), and into the
health status, which it hands to the loop with the sample (a
:class:`Report`): the transport sends ``health_status`` and
``performance_metrics`` to the connections that follow them and answers
/health from the latest report. Raw samples are not stored: nothing acts on
them but the rules.

Supervision: a singleton like the scheduler. If it fails the service stops
(docs/architecture.md); it holds no state a restart does not rebuild.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil
import pykka
from msgspec import Struct

from adwd.actors.alerts import AlertBook, Fired, Transition
from adwd.actors.base import Actor
from adwd.actors.health import MonitorSettings, Sample, build_rules, describe, health_of, values
from adwd.actors.messages import Append
from adwd.actors.telemetry import Telemetry
from adwd.events.codec import encode
from adwd.events.domain import SYSTEM_STREAM, AlertFired, AlertResolved
from adwd.events.store import NewEvent, StoredEvent
from adwd.events.wire import (
    HealthStatus,
    HealthStatusData,
    PerformanceMetrics,
    PerformanceMetricsData,
)
from adwd.projections.health import Finished, RunHealth, RunKey

log = logging.getLogger(__name__)


class Report(Struct, frozen=True, kw_only=True):
    """A sample's outcome for the loop: the frames to send and what /health says."""

    health: HealthStatusData
    health_frame: bytes
    performance_frame: bytes
    firing: list[dict[str, str]]  # rule, component, level of each firing alert
    changed: bool  # the status differs from the previous report's


class Tick(Struct, frozen=True):
    """MonitorActor (from its ticker): take a sample."""


class Batch(Struct, frozen=True):
    """MonitorActor (from the event log): a committed batch to fold."""

    events: Sequence[StoredEvent]


class Attach(Struct, frozen=True):
    """MonitorActor: the parts that start after it (the transport and its loop)."""

    core: dict[str, pykka.ActorRef[Any]]  # kind -> ref, for core_actors_down
    event_log: pykka.ActorRef[pykka.Actor]  # where alert events go
    connections: Callable[[], int]
    deliver: Callable[[Report], None]  # thread-safe: hands the report to the loop
    is_fatal: Callable[[], bool]


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")


def _load() -> float:
    """The 1-minute load average per CPU (0 where the platform has none)."""
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:
        return 0.0


class MonitorActor(Actor):
    """Samples the service on an interval; alerts and health from the rules."""

    KIND = "monitor"

    def __init__(
        self,
        *,
        settings: MonitorSettings,
        telemetry: Telemetry,
        data_dir: Path,
        queued: Sequence[tuple[RunKey, float]] = (),
        running: Sequence[RunKey] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._settings = settings
        self._t = telemetry
        self._data_dir = data_dir
        self._clock = clock
        self._started = clock()
        self._runs = RunHealth(window=settings.failure_window)
        self._runs.seed(queued, running)
        self._book = AlertBook(build_rules(settings), lambda name: f"{name}-{secrets.token_hex(4)}")
        self._attached: Attach | None = None
        self._status = "healthy"
        self._proc = psutil.Process()
        self._children: dict[int, psutil.Process] = {}  # cached: cpu_percent keeps state
        self._halt = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="adwd-monitor", daemon=True)

    def on_start(self) -> None:
        """Start the ticker; the first cpu_percent call only sets its baseline."""
        self._proc.cpu_percent(None)
        self._ticker.start()

    def on_stop(self) -> None:
        """Stop the ticker (it only ever tells this actor)."""
        self._halt.set()

    def _tick(self) -> None:  # the ticker's thread: only tells
        while not self._halt.wait(self._settings.interval_s):
            try:
                self.actor_ref.tell(Tick())
            except pykka.ActorDeadError:
                return

    def on_receive(self, message: object) -> object:
        """Fold batches, take samples, remember what started after this actor."""
        if isinstance(message, Batch):
            for stored in message.events:
                self._count(self._runs.apply(stored))
        elif isinstance(message, Tick) and self._attached is not None:
            # (Not before the service is up: nothing to report to.) A sample that cannot
            # read the machine is skipped, never fatal: monitoring must not stop adwd.
            try:
                self.sample_now()
            except (psutil.Error, OSError) as exc:
                log.warning("monitor sample skipped: %s", exc)
        elif isinstance(message, Attach):
            self._attached = message
        return None

    def _count(self, what: tuple[str, str] | Finished | None) -> None:
        if isinstance(what, Finished):
            self._t.runs_finished.labels(what.workflow_type, what.outcome).inc()
            if what.duration_s is not None:
                self._t.run_duration.labels(what.workflow_type).observe(what.duration_s)
        elif what is not None:
            self._t.runs_started.labels(what[1]).inc()

    def sample_now(self) -> Report:
        """Take a sample, apply the rules, append alert events, hand the loop a report."""
        now = self._clock()
        sample = self._sample(now)
        transitions = self._book.observe(now, values(sample))
        if transitions:
            self._record(transitions, now)
        firing = self._book.firing()
        status = health_of(firing)
        changed, self._status = status != self._status, status
        self._export(sample, status)
        health = HealthStatusData(
            status=status,
            load=round(sample.load, 3),
            memory_usage=round(sample.memory_percent, 2),
            active_connections=sample.connections,
            uptime=round(sample.uptime_s, 3),
        )
        stamp = _iso(time.time())
        perf = PerformanceMetricsData(
            cpu_usage=round(sample.cpu_percent, 2),
            memory_usage=round(sample.memory_percent, 2),
            network_io={
                "bytes_sent": sample.net_bytes_sent,
                "bytes_recv": sample.net_bytes_recv,
                "connections": sample.connections,
            },
            disk_io={
                "read_bytes": sample.read_bytes,
                "write_bytes": sample.write_bytes,
                "event_log_bytes": sample.log_bytes,
                "free_mb": round(sample.disk_free_mb, 1),
                "commit_max_s": round(sample.commit_max_s, 6),
                "commits": sample.commits,
            },
            timestamp=stamp,
        )
        report = Report(
            health=health,
            health_frame=encode(HealthStatus(health)),
            performance_frame=encode(PerformanceMetrics(perf)),
            firing=[{"rule": r.name, "component": r.component, "level": r.level} for r in firing],
            changed=changed,
        )
        if self._attached is not None:
            self._attached.deliver(report)
        return report

    def _record(self, transitions: list[Transition], now: float) -> None:
        events: list[NewEvent] = []
        for t in transitions:
            rule = t.rule
            if isinstance(t, Fired):
                log.warning("alert %s fired: %s", t.alert_id, describe(rule, t.value))
                fired = AlertFired(
                    alert_id=t.alert_id,
                    rule=rule.name,
                    component=rule.component,
                    level=rule.level,
                    health=rule.health,
                    message=describe(rule, t.value),
                    value=t.value,
                    threshold=rule.raise_at,
                    actions_required=list(rule.actions_required),
                )
                events.append(NewEvent(SYSTEM_STREAM, fired))
            else:
                text = f"Resolved: {describe(rule, t.value)}"
                log.info("alert %s resolved: %s", t.alert_id, text)
                resolved = AlertResolved(
                    alert_id=t.alert_id,
                    rule=rule.name,
                    component=rule.component,
                    message=text,
                    value=t.value,
                    threshold=rule.clear_level,
                    firing_s=round(now - t.fired_at, 3),
                )
                events.append(NewEvent(SYSTEM_STREAM, resolved))
        if self._attached is not None:
            with contextlib.suppress(pykka.ActorDeadError):  # stopping: nothing to record with
                self._attached.event_log.tell(Append(events))

    def _export(self, sample: Sample, status: str) -> None:
        t = self._t
        t.queue_length.set(sample.queue_length)
        t.queue_age.set(sample.queue_age_s)
        t.running.set(sample.running)
        t.log_bytes.set(sample.log_bytes)
        t.disk_free.set(sample.disk_free_mb * 2**20)
        firing = {rule.name for rule in self._book.firing()}
        for name in self._book.phases():
            t.alerts_firing.labels(name).set(1 if name in firing else 0)
        for state in ("healthy", "degraded", "unhealthy"):
            t.health.labels(state).set(1 if state == status else 0)

    # -- reading the machine: psutil, the data directory ------------------

    def _sample(self, now: float) -> Sample:
        cpu, rss, reads, writes = 0.0, 0, 0, 0
        open_files: int | None = None
        procs = [self._proc, *self._live_children()]
        for proc in procs:
            try:
                with proc.oneshot():
                    cpu += proc.cpu_percent(None)
                    rss += proc.memory_info().rss
                    if proc is self._proc:
                        open_files = proc.num_fds()
                    io = proc.io_counters()
                    reads, writes = reads + io.read_bytes, writes + io.write_bytes
            except (psutil.Error, AttributeError):  # gone, or not on this platform
                continue
        total_mem = psutil.virtual_memory().total or 1
        try:
            net = psutil.net_io_counters()
            sent: int | None = net.bytes_sent
            recv: int | None = net.bytes_recv
        except (psutil.Error, AttributeError, OSError):
            sent = recv = None
        commit_max, commits, batch_max = self._t.commits.take()
        try:
            free_mb = psutil.disk_usage(str(self._data_dir)).free / 2**20
        except OSError:
            free_mb = 0.0
        a = self._attached
        down = 0
        if a is not None:
            down = sum(not ref.is_alive() for ref in a.core.values())
            down = max(down, 1) if a.is_fatal() else down
        return Sample(
            uptime_s=now - self._started,
            cpu_percent=cpu,
            memory_rss_bytes=rss,
            memory_percent=100.0 * rss / total_mem,
            open_files=open_files,
            children=len(procs) - 1,
            read_bytes=reads,
            write_bytes=writes,
            net_bytes_sent=sent,
            net_bytes_recv=recv,
            load=_load(),
            commit_max_s=commit_max,
            commits=commits,
            batch_max=batch_max,
            log_bytes=self._log_bytes(),
            disk_free_mb=free_mb,
            queue_length=len(self._runs.queued),
            queue_age_s=self._runs.queue_age(time.time()),
            running=len(self._runs.running),
            failure_rate=self._runs.failure_rate(),
            connections=a.connections() if a is not None else 0,
            core_actors_down=down,
        )

    def _live_children(self) -> list[psutil.Process]:
        """The workflow children (and theirs), the same Process objects sample to sample."""
        try:
            found = self._proc.children(recursive=True)
        except psutil.Error:
            return []
        seen = {}
        for child in found:
            seen[child.pid] = self._children.get(child.pid, child)
            if child.pid not in self._children:
                with contextlib.suppress(psutil.Error):
                    child.cpu_percent(None)  # the baseline; the next sample measures
        self._children = seen
        return list(seen.values())

    def _log_bytes(self) -> int:
        size = 0
        for name in ("events.db", "events.db-wal"):
            with contextlib.suppress(OSError):
                size += (self._data_dir / name).stat().st_size
        return size
