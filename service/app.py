"""Wiring: open the log, recover, start the actors, stop them in order."""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import os
import sqlite3
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pykka

from adwd.actors.eventlog import EventLogActor, Relay
from adwd.actors.messages import Append, Committed, Listening
from adwd.actors.monitor import Attach, Batch, MonitorActor
from adwd.actors.projector import ProjectionActor
from adwd.actors.scheduler import SchedulerActor
from adwd.actors.telemetry import Telemetry
from adwd.actors.workflow import WorkflowActor
from adwd.events.domain import SYSTEM_STREAM, ActorFailed, ServiceStarted, ServiceStopped
from adwd.events.errors import AdwdError, StoreError
from adwd.events.store import EventStore, NewEvent, StoredEvent
from adwd.projections.health import ALERT_TYPES, resolve_at_start, unresolved
from adwd.projections.runs import RunsProjection
from adwd.projections.views import ViewStore, catch_up
from adwd.service import security
from adwd.service.config import Config
from adwd.service.recovery import recover_in_flight
from adwd.transport.server import TransportActor, TransportSecurity

log = logging.getLogger(__name__)

EVENTS_FILE = "events.db"
VIEWS_FILE = "views.db"

# The loop thread gives up the GIL on every socket write and read; with the
# interpreter's default 5 ms switch interval it then waits up to 5 ms behind a
# busy actor thread to get it back, once per write (a convoy). At 0.5 ms the
# trigger benchmark accepts ~2.5x as many triggers/s (docs/performance.md).
SWITCH_INTERVAL_S = 0.0005
_switch_lock = threading.Lock()
_switch = {"running": 0, "original": 0.0}  # services running in this process; the interval before


def _shorten_switch_interval() -> None:
    with _switch_lock:
        if _switch["running"] == 0:
            _switch["original"] = sys.getswitchinterval()
        _switch["running"] += 1
        sys.setswitchinterval(min(SWITCH_INTERVAL_S, _switch["original"]))


def _restore_switch_interval() -> None:
    with _switch_lock:
        _switch["running"] -= 1
        if _switch["running"] == 0:  # the last service of this process stopped
            sys.setswitchinterval(_switch["original"])


def _tell_monitor(monitor: pykka.ActorRef[MonitorActor], batch: Sequence[StoredEvent]) -> None:
    """The event log's subscriber for the monitor (which stops first at shutdown)."""
    with contextlib.suppress(pykka.ActorDeadError):
        monitor.tell(Batch(batch))


def _version() -> str:
    from adwd import __version__  # local: the package root is above the layers

    return __version__


class Service:
    """The running service: start it, read its port, stop it."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.port = 0
        self.fatal = threading.Event()
        self.fatal_reason = ""
        self._store: EventStore | None = None
        self._views: ViewStore | None = None
        self._event_log: pykka.ActorRef[EventLogActor] | None = None
        self._scheduler: pykka.ActorRef[SchedulerActor] | None = None
        self._transport: pykka.ActorRef[TransportActor] | None = None
        self._projector: pykka.ActorRef[ProjectionActor] | None = None
        self._monitor: pykka.ActorRef[MonitorActor] | None = None
        # This service's Prometheus metrics (GET /metrics).
        self.telemetry = Telemetry(version=_version())
        self._switched = False
        self._tls: TransportSecurity | None = None

    def reload_tls(self) -> None:
        """SIGHUP: read the TLS certificate and key again (docs/security.md)."""
        if self._tls is None or self._tls.ssl is None:
            log.info("SIGHUP: no TLS configured, nothing to reload")
            return
        context, settings = self._tls.ssl, self.config.security

        def reload() -> None:
            try:
                security.reload_tls(context, settings)
            except AdwdError as exc:
                log.error("%s", exc)
                return
            log.info("TLS certificate reloaded from %s", settings.tls_cert)

        # On the loop's thread: OpenSSL's context is not changed under a handshake
        # in progress (a client then saw the connection cut mid-handshake).
        if self._transport is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                self._transport.proxy().on_loop(reload).get()
                return
        reload()

    @property
    def events_path(self) -> str:
        """The event log file."""
        return str(self.config.data_path / EVENTS_FILE)

    def start(self) -> None:
        """Open the log, recover runs, start the actors and listen.

        If any step fails, whatever started is stopped again before the error
        propagates, so a failed start never leaves threads keeping the process alive.
        """
        _shorten_switch_interval()
        self._switched = True
        try:
            self._start()
        except BaseException:
            self.stop("failed to start")
            raise

    def _start(self) -> None:
        cfg = self.config
        # Safe by default (docs/security.md): refuse before anything is opened.
        insecure = security.check_binding(cfg.host, cfg.security, cfg.insecure)
        if insecure:
            log.warning("%s", insecure)
        transport_security = self._tls = TransportSecurity(
            config=cfg.security,
            authenticator=security.authenticator(cfg.security),
            origins=security.origins(cfg.host, cfg.security),
            ssl=security.tls_context(cfg.security),
        )
        data = cfg.data_path
        data.mkdir(parents=True, exist_ok=True)
        store = self._store = EventStore(data / EVENTS_FILE)
        views = self._views = ViewStore(data / VIEWS_FILE)
        checkpoint, epoch = views.checkpoint()
        if epoch == store.epoch and checkpoint > store.last_seq():
            # The log is older than the views built from it: it was restored from a backup.
            log.warning("event log restored from an older copy: new epoch %s", store.rotate_epoch())
        projections = catch_up(views, store)
        runs = projections.runs
        supervise = self._on_core_failure
        projector = self._projector = ProjectionActor.start(
            supervisor=supervise,
            projections=projections,
            views=views,
            epoch=store.epoch,
            queue_status_interval_s=cfg.queue_status_interval_s,
        )
        subscribers = [lambda batch: projector.tell(Committed(batch))]
        # Monitoring (issue 12): started before the log so it folds every committed event.
        monitor = self._monitor = self._start_monitor(runs)
        if monitor is not None:
            subscribers.append(functools.partial(_tell_monitor, monitor))
        # The scheduler folds the committed log too (dependencies, recovery): it gets
        # every batch after the catch-up, including those committed before it started.
        to_scheduler = Relay()
        event_log = self._event_log = EventLogActor.start(
            store,
            supervisor=supervise,
            subscribers=subscribers,
            leading=[to_scheduler],
            on_fatal=self._on_fatal,
            on_commit=self.telemetry.observe_commit,
        )
        startup = [
            NewEvent(
                SYSTEM_STREAM,
                ServiceStarted(
                    pid=os.getpid(), host=cfg.host, port=cfg.port, max_concurrent=cfg.max_concurrent
                ),
            )
        ]
        # Runs that were in flight when the service last stopped cannot be resumed.
        startup += recover_in_flight(runs.in_flight(), cfg.shutdown_grace_s)
        # Alerts the last run left firing end here: its monitor's state is gone.
        left = unresolved(store.read(types=ALERT_TYPES))
        startup += [NewEvent(SYSTEM_STREAM, resolve_at_start(fired)) for fired in left]
        event_log.tell(Append(startup))
        catalogue = cfg.catalogue
        self._scheduler = SchedulerActor.start(
            supervisor=supervise,
            event_log=event_log,
            catalogue=catalogue,
            data_dir=data,
            project_dir=cfg.project_path,
            python=cfg.python_path,
            max_concurrent=cfg.max_concurrent,
            max_queue=cfg.max_queue,
            grace_s=cfg.shutdown_grace_s,
            recovered=[view.request for view in runs.waiting()],
            history={name: m.durations for name, m in projections.metrics.types.items()},
            known_requests=projections.requests.in_order(),
            card_stages=runs.card_stages(),
            log_lines_per_s=cfg.log_lines_per_s,
            fault_injection=cfg.fault_injection,
            lineage=copy.deepcopy(projections.lineage),
            retry=cfg.retry,
            retry_classes=cfg.retry_classes,
            stage_triggers=cfg.stage_triggers,
            lineage_of=_LineageReader(data / VIEWS_FILE),
        )
        to_scheduler.attach(self._scheduler)
        self._transport = TransportActor.start(
            supervisor=supervise,
            host=cfg.host,
            port=cfg.port,
            scheduler=self._scheduler,
            event_log=event_log,
            projector=projector,
            events_path=data / EVENTS_FILE,
            workflow_types=frozenset(catalogue),
            max_outbound_bytes=cfg.max_outbound_bytes,
            compression=cfg.compression,
            compression_min_bytes=cfg.compression_min_bytes,
            connection_threads=cfg.connection_threads,
            fault_injection=cfg.fault_injection,
            is_fatal=self.fatal.is_set,
            telemetry=self.telemetry,
            health_interval_s=cfg.monitor.health_interval_s,
            performance_interval_s=cfg.monitor.performance_interval_s,
            quality_interval_s=cfg.monitor.quality_interval_s,
            ping_interval_s=cfg.monitor.ping_interval_s,
            ping_timeout_s=cfg.monitor.ping_timeout_s,
            security=transport_security,
        )
        self.port = self._transport.proxy().port.get()
        if monitor is not None:
            transport = self._transport.proxy()
            core: dict[str, pykka.ActorRef[Any]] = {
                "event_log": event_log,
                "scheduler": self._scheduler,
                "projector": projector,
                "transport": self._transport,
            }
            monitor.tell(
                Attach(
                    core=core,
                    event_log=event_log,
                    connections=transport.connection_count_fn().get(),
                    deliver=transport.monitor_sink().get(),
                    is_fatal=self.fatal.is_set,
                )
            )
        # Workflows that report over HTTP or WebSocket learn where from their environment.
        self._scheduler.tell(Listening(host=cfg.host, port=self.port))
        scheme = "wss" if transport_security.ssl else "ws"
        log.info(
            "adwd listening on %s://%s:%d/ws/trigger (data in %s; authentication %s)",
            scheme,
            cfg.host,
            self.port,
            data,
            ", ".join(cfg.security.methods) or "off",
        )

    def _start_monitor(self, runs: RunsProjection) -> pykka.ActorRef[MonitorActor] | None:
        """The MonitorActor, seeded with the runs the log holds (None: monitoring off)."""
        settings = self.config.monitor
        if not settings.enabled:
            return None
        ref: pykka.ActorRef[MonitorActor] = MonitorActor.start(
            supervisor=self._on_core_failure,
            settings=settings,
            telemetry=self.telemetry,
            data_dir=self.config.data_path,
            queued=[(view.key, view.queued_ts) for view in runs.waiting()],
            running=[view.key for view in runs.in_flight()],
        )
        return ref

    def stop(self, reason: str = "shutdown", *, fatal: bool = False) -> None:
        """Stop accepting, end running workflows, flush the log, close sockets with 1001.

        ``fatal`` (a core actor or the log failed): every client first gets an
        ``error`` saying why, and the close code is 1011.

        Each step goes on when an actor is already dead (a failed core actor is
        why a service stops early): stopping never leaves threads behind.
        """
        alive = contextlib.suppress(pykka.ActorDeadError)
        if self._monitor is not None:
            self._monitor.stop()  # first: no alerts about the service stopping itself
            self._monitor = None
        if self._transport is not None:
            with alive:
                transport = self._transport.proxy()
                transport.stop_accepting().get()
                if fatal:
                    transport.fail_all(reason).get()
        if self._scheduler is not None:
            self._scheduler.stop()
        # A failed scheduler stopped no workflow: stop what is left, each ends its run.
        for worker in pykka.ActorRegistry.get_by_class(WorkflowActor):
            worker.stop()
        if self._event_log is not None:
            with alive:
                stopped = ServiceStopped(reason=reason)
                self._event_log.tell(Append([NewEvent(SYSTEM_STREAM, stopped)]))
            self._event_log.stop()
        if self._projector is not None:
            self._projector.stop()  # after the log: it has folded every batch
            self._projector = None
        if self._transport is not None:
            self._transport.stop()
        if self._store is not None:
            self._store.close()
        if self._views is not None:
            self._views.close()
            self._views = None
        self._transport = self._scheduler = self._event_log = None
        self._store = None
        if self._switched:
            self._switched = False
            _restore_switch_interval()

    def _on_fatal(self, exc: BaseException) -> None:
        log.critical("stopping: the event log failed: %s", exc)
        self._set_fatal("the event log failed")

    def _on_core_failure(self, actor: object, exc: BaseException) -> None:
        """Supervision of the singletons: the service stops and exits non-zero.

        A singleton's state is folded from the log at start, so the process
        supervisor's restart (systemd, a container runtime) plus crash recovery
        rebuild it whole; restarting one actor alone inside a process whose
        other actors hold references to the dead one would not.
        """
        kind = getattr(actor, "KIND", type(actor).__name__)
        if self.fatal.is_set() and isinstance(exc, pykka.ActorDeadError):
            # A consequence of the first failure (it told a dead actor), not a cause.
            log.warning("the %s actor stopped too: %s", kind, exc)
            return
        log.critical("stopping: the %s actor failed (%s)", kind, type(exc).__name__)
        if kind != "event_log" and self._event_log is not None:
            failed = ActorFailed(actor=kind, exception=type(exc).__name__, action="service stops")
            with contextlib.suppress(pykka.ActorDeadError):
                self._event_log.tell(Append([NewEvent(SYSTEM_STREAM, failed)]))
        self._set_fatal(f"the {kind} actor failed")

    def _set_fatal(self, reason: str) -> None:
        if not self.fatal.is_set():
            self.fatal_reason = reason
            self.fatal.set()


class _LineageReader:
    """What completed runs of an old adw_id covered, read from views.db on the
    scheduler's thread: its own read-only connection, opened on first use and
    closed by the scheduler when it stops (on the same thread)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._store: ViewStore | None = None

    def __call__(self, adw_id: str) -> tuple[str, ...] | None:
        try:
            if self._store is None:
                self._store = ViewStore(self._path, readonly=True)
            return self._store.lineage_of(adw_id)
        except (StoreError, sqlite3.Error):
            log.exception("could not read the lineage of %s from %s", adw_id, self._path)
            return None

    def close(self) -> None:
        """Close the connection, if one was opened."""
        if self._store is not None:
            self._store.close()
            self._store = None
