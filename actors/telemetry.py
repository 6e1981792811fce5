"""The service's Prometheus metrics (GET /metrics) and the commit figures the monitor samples.

One ``CollectorRegistry`` per service, never prometheus-client's global one:
tests and benchmarks run several services in one process. Names start with
``adwd_``, use base units (seconds, bytes), and counters end in ``_total``
(prometheus-client adds it). No label holds an adw_id, a connection or a
user: a label's every value is a time series, and those are unbounded.

Each metric is written by the one place that knows the fact: the event log
times its commits, the monitor counts runs from the committed events, the
ConnectionActor counts what clients send, the router what it sends them.
prometheus-client's metrics take a lock per update, so any thread may.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Runs take minutes: buckets from 10 s to 2 h.
RUN_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0)
# A group commit with synchronous=FULL takes ~0.5 ms on an SSD; seconds means trouble.
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)


class CommitStats:
    """Commit figures since the monitor last took them (any thread writes, one reads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._max_s = 0.0
        self._count = 0
        self._batch_max = 0

    def add(self, seconds: float, events: int) -> None:
        """One commit of ``events`` events took ``seconds``."""
        with self._lock:
            self._max_s = max(self._max_s, seconds)
            self._count += 1
            self._batch_max = max(self._batch_max, events)

    def take(self) -> tuple[float, int, int]:
        """(longest commit s, commits, largest batch) since the last take; resets them."""
        with self._lock:
            taken = (self._max_s, self._count, self._batch_max)
            self._max_s, self._count, self._batch_max = 0.0, 0, 0
        return taken


class Telemetry:
    """Every metric of one service, in its own registry."""

    def __init__(self, version: str = "") -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        # adwd_process_cpu_seconds_total, _resident_memory_bytes, _open_fds...: read
        # from /proc at scrape time only, so they cost nothing between scrapes.
        ProcessCollector(namespace="adwd", registry=r)
        Info("adwd_build", "The running adwd's version.", registry=r).info({"version": version})
        self.connections = Gauge("adwd_connections", "Open WebSocket connections.", registry=r)
        self.unsent = Gauge(
            "adwd_connections_unsent_bytes",
            "Bytes waiting to be sent to clients, all connections together.",
            registry=r,
        )
        self.messages_in = Counter(
            "adwd_messages_received",
            "Messages received from clients, by type.",
            ["type"],
            registry=r,
        )
        self.runs_started = Counter(
            "adwd_runs_started", "Runs started, by workflow type.", ["workflow_type"], registry=r
        )
        self.runs_finished = Counter(
            "adwd_runs_finished",
            "Runs ended, by workflow type and outcome (completed, failed, cancelled).",
            ["workflow_type", "outcome"],
            registry=r,
        )
        self.run_duration = Histogram(
            "adwd_run_duration_seconds",
            "Duration of the runs that ended after starting, by workflow type.",
            ["workflow_type"],
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.queue_length = Gauge("adwd_queue_length", "Runs waiting for a slot.", registry=r)
        self.queue_age = Gauge(
            "adwd_queue_oldest_age_seconds",
            "How long the oldest queued run has waited.",
            registry=r,
        )
        self.running = Gauge("adwd_runs_running", "Runs running now.", registry=r)
        self.commit_duration = Histogram(
            "adwd_event_log_commit_duration_seconds",
            "Duration of each event-log commit (one group of appends).",
            buckets=COMMIT_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "adwd_event_log_batch_events",
            "Events per event-log commit.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.log_bytes = Gauge("adwd_event_log_bytes", "Size of events.db and its WAL.", registry=r)
        self.disk_free = Gauge(
            "adwd_data_disk_free_bytes", "Free space of the data directory's disk.", registry=r
        )
        self.alerts_firing = Gauge(
            "adwd_alerts_firing", "1 while the rule's alert fires, else 0.", ["rule"], registry=r
        )
        self.health = Gauge(
            "adwd_health",
            "1 for the current health status, 0 for the others.",
            ["status"],
            registry=r,
        )
        self.commits = CommitStats()
        self._received: dict[str, Counter] = {}  # a dict's get and set are atomic (GIL)

    def received(self, kind: str) -> None:
        """A client message of type ``kind`` arrived (any dispatcher thread)."""
        child = self._received.get(kind)
        if child is None:  # labels() takes a lock and builds a key: once per type
            child = self._received[kind] = self.messages_in.labels(kind)
        child.inc()

    def observe_commit(self, seconds: float, events: int) -> None:
        """The event log committed ``events`` events in ``seconds`` (its own thread)."""
        self.commit_duration.observe(seconds)
        self.batch_size.observe(events)
        self.commits.add(seconds, events)

    def count_sent(self, sent: Callable[[], Mapping[bytes, int]]) -> None:
        """Report ``sent()`` (message type -> messages handed to connections) as
        ``adwd_messages_sent_total``. The router keeps that count without locks on
        the loop, and /metrics is rendered on the loop, so it is read there."""
        self.registry.register(_SentCollector(sent))

    def count_connections(self, count: Callable[[], int], unsent: Callable[[], int]) -> None:
        """Read the number of connections and their unsent bytes at each scrape (on the
        loop, where /metrics is rendered and the router lives)."""
        self.connections.set_function(count)
        self.unsent.set_function(unsent)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class _SentCollector(Collector):
    """``adwd_messages_sent_total{type}`` from the router's own count."""

    def __init__(self, sent: Callable[[], Mapping[bytes, int]]) -> None:
        self._sent = sent

    def collect(self) -> Iterator[Metric]:
        """One sample per message type sent so far."""
        family = CounterMetricFamily(
            "adwd_messages_sent",
            "Messages handed to clients (one per recipient), by type.",
            labels=["type"],
        )
        for kind, count in sorted(self._sent().items()):
            family.add_metric([kind.decode("ascii", "replace")], count)
        yield family
