"""Read models people query, kept in SQLite beside the log: ``views.db``.

Tables ``runs``, ``type_metrics`` and ``audit`` hold the projections, and
``checkpoint`` the seq and log epoch they cover. Rows and checkpoint are
written in one transaction, so after a crash the views are exactly as of
their checkpoint: catch-up applies each later event once, never twice,
never skipping one. The file is rebuildable from the log, so it trades
durability for speed (``synchronous=NORMAL``): a power loss may cost its
newest commits, which the next catch-up re-applies.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import sqlite_utils

from adwd.events.domain import ResourceUsage, RunQueued
from adwd.events.errors import StoreError
from adwd.events.store import EventStore, connect
from adwd.projections.audit import AuditEntry
from adwd.projections.bundle import Projections
from adwd.projections.lineage import (
    MAX_FAILURES,
    Failure,
    LineageProjection,
    Outcomes,
)
from adwd.projections.metrics import RECENT, WINDOW, TypeMetrics
from adwd.projections.requests import KEEP as REQUESTS_KEPT
from adwd.projections.requests import Decision
from adwd.projections.runs import KEEP_ENDED, RunView

_RUN_COLUMNS = (
    "adw_id", "workflow_type", "status", "queued_seq", "last_seq", "progress_percent",
    "current_step", "message", "queued_ts", "started_ts", "ended_ts", "duration_s", "pid",
    "proc_start", "expected_s", "exit_code", "cancelled", "resource_usage", "request", "stage",
)  # fmt: skip
SCHEMA_VERSION = 6  # 3: runs.stage; 4: lineage, recovery_outcomes; 5: requests; 6: lineage.seq
# adw_ids whose lineage a start loads (the newest); older ones are read on demand
# (ViewStore.lineage_of), so a restart costs the same whatever the history's length.
KEEP_LINEAGE = 500
_AUDIT_COLUMNS = tuple(AuditEntry.__dataclass_fields__)
_encode = msgspec.json.encode
_usage = msgspec.json.Decoder(ResourceUsage | None)
_request = msgspec.json.Decoder(RunQueued)


class ViewStore:
    """The read models' SQLite file."""

    def __init__(self, path: Path | str, *, readonly: bool = False) -> None:
        self.path = Path(path)
        try:
            conn = connect(
                self.path,
                readonly=readonly,
                synchronous="NORMAL",  # derived data: rebuilt from the log if lost
                missing=f"No views at {self.path}: start the service once with this "
                "--data-dir so it builds them.",
            )
            if not readonly:
                self._create(sqlite_utils.Database(conn))
        except sqlite3.Error as exc:
            raise StoreError(f"Cannot open views {self.path}: {exc}") from exc
        self._conn = conn

    @staticmethod
    def _create(db: sqlite_utils.Database) -> None:
        # Views are derived data: a file of another schema is dropped and rebuilt from the log.
        if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            for name in db.table_names():
                db[name].drop()
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        t = db.table
        t("checkpoint").create(
            {"name": str, "seq": int, "epoch": str, "max_concurrent": int, "audit_count": int},
            pk="name",
            if_not_exists=True,
        )
        columns: dict[str, Any] = dict.fromkeys(_RUN_COLUMNS, str)
        columns.update(
            dict.fromkeys(
                ("queued_seq", "last_seq", "progress_percent", "pid", "proc_start", "exit_code",
                 "cancelled"), int,
            )
        )  # fmt: skip
        columns.update(
            dict.fromkeys(
                ("queued_ts", "started_ts", "ended_ts", "duration_s", "expected_s"), float
            )
        )
        t("runs").create(columns, pk=("adw_id", "workflow_type"), if_not_exists=True)
        t("runs").create_index(["status"], if_not_exists=True)
        t("runs").create_index(["last_seq"], if_not_exists=True)
        t("type_metrics").create(
            {"workflow_type": str, "completed": int, "failed": int, "durations": str},
            pk="workflow_type",
            if_not_exists=True,
        )
        audit: dict[str, Any] = dict.fromkeys(_AUDIT_COLUMNS, str)
        audit.update(seq=int, ts=float)
        t("audit").create(audit, pk="seq", if_not_exists=True)
        t("audit").create_index(["adw_id"], if_not_exists=True)
        t("lineage").create(
            {"adw_id": str, "seq": int, "data": str}, pk="adw_id", if_not_exists=True
        )
        t("lineage").create_index(["seq"], if_not_exists=True)
        t("requests").create(
            {"request_id": str, "seq": int, "decision": str}, pk="request_id", if_not_exists=True
        )
        t("requests").create_index(["seq"], if_not_exists=True)
        t("recovery_outcomes").create(
            {"error_class": str, "option": str, "tried": int, "completed": int},
            pk=("error_class", "option"),
            if_not_exists=True,
        )

    def checkpoint(self) -> tuple[int, str]:
        """``(seq, epoch)`` the views cover; ``(0, "")`` when empty."""
        row = self._conn.execute(
            "SELECT seq, epoch FROM checkpoint WHERE name = 'projections'"
        ).fetchone()
        return (int(row[0]), str(row[1])) if row else (0, "")

    def save(self, projections: Projections, epoch: str) -> None:
        """Write what changed since the last save, and the checkpoint, in one transaction."""
        runs = projections.runs
        dirty = [runs.runs[key] for key in runs.dirty if key in runs.runs] + runs.retired
        runs.dirty, runs.retired = set(), []
        audit = projections.audit.take()
        metrics = projections.metrics
        types = {name: metrics.types[name] for name in metrics.dirty}
        metrics.dirty = set()
        lineage = projections.lineage
        adw_ids, lineage.dirty = lineage.dirty, set()
        requests = projections.requests
        rids, requests.dirty = requests.dirty, set()
        try:
            with self._conn:
                self._conn.executemany(
                    f"INSERT OR REPLACE INTO runs VALUES ({', '.join('?' * len(_RUN_COLUMNS))})",
                    [_run_row(view) for view in dirty],
                )
                self._conn.executemany(
                    "INSERT OR REPLACE INTO type_metrics VALUES (?, ?, ?, ?)",
                    [
                        (name, m.completed, m.failed, _encode(list(m.durations)).decode())
                        for name, m in types.items()
                    ],
                )
                self._conn.executemany(
                    f"INSERT OR REPLACE INTO audit VALUES ({', '.join('?' * len(_AUDIT_COLUMNS))})",
                    [tuple(getattr(a, c) for c in _AUDIT_COLUMNS) for a in audit],
                )
                self._conn.executemany(
                    "INSERT OR REPLACE INTO lineage VALUES (?, ?, ?)",
                    [
                        (a, projections.seq, _encode(row).decode())
                        for a, row in _lineage_rows(lineage, adw_ids).items()
                    ],
                )
                self._conn.executemany(
                    "INSERT OR REPLACE INTO requests VALUES (?, ?, ?)",
                    [
                        (rid, seq, _encode(decision).decode())
                        for rid in rids
                        if (kept := requests.decisions.get(rid)) is not None
                        for seq, decision in (kept,)
                    ],
                )
                self._conn.executemany(
                    "INSERT OR REPLACE INTO recovery_outcomes VALUES (?, ?, ?, ?)",
                    [(c, o, t.tried, t.completed) for (c, o), t in lineage.outcomes.items()],
                )
                self._conn.execute(
                    "INSERT OR REPLACE INTO checkpoint VALUES ('projections', ?, ?, ?, ?)",
                    (
                        projections.seq,
                        epoch,
                        projections.queue.max_concurrent,
                        projections.audit.count,
                    ),
                )
        except sqlite3.Error as exc:
            raise StoreError(f"Cannot write views {self.path}: {exc}") from exc

    def load(self) -> Projections:
        """The projections as of the checkpoint."""
        p = Projections()
        seq_row = self._conn.execute(
            "SELECT seq, max_concurrent, audit_count FROM checkpoint WHERE name = 'projections'"
        ).fetchone()
        if seq_row is None:
            return p
        p.seq = p.runs.seq = int(seq_row[0])
        p.queue.max_concurrent = int(seq_row[1])
        p.audit.count = int(seq_row[2])
        # Only what the live projections hold: active runs and the last ended ones.
        # So a restart costs the same whatever the length of the history.
        columns = ", ".join(_RUN_COLUMNS)
        active = self._conn.execute(
            f"SELECT {columns} FROM runs WHERE status IN ('queued', 'running') ORDER BY queued_seq"
        ).fetchall()
        ended = self._conn.execute(
            # (+status: walk the last_seq index backwards, not every ended run by status.)
            f"SELECT {columns} FROM runs WHERE +status IN ('completed', 'failed', 'cancelled') "
            "ORDER BY last_seq DESC LIMIT ?",
            (KEEP_ENDED,),
        ).fetchall()
        views = [_run_view(row) for row in active + ended[::-1]]
        for view in sorted(views, key=lambda v: v.queued_seq):
            p.runs.runs[view.key] = view
        for view in views:
            if view.status == "queued":
                p.queue.waiting[view.key] = view.request.connection_id
            elif view.status == "running":
                p.queue.running[view.key] = view.started_ts or 0.0
            else:
                p.runs.ended.append(view.key)
        for name, completed, failed, durations in self._conn.execute(
            "SELECT workflow_type, completed, failed, durations FROM type_metrics"
        ):
            values = msgspec.json.decode(durations, type=list[float])
            p.metrics.types[name] = TypeMetrics(
                completed,
                failed,
                deque(values, maxlen=WINDOW),
                deque(values[-RECENT:], maxlen=RECENT),
            )
        _load_lineage(self._conn, p)
        decode = msgspec.json.Decoder(Decision).decode
        for rid, seq, decision in reversed(
            self._conn.execute(
                "SELECT request_id, seq, decision FROM requests ORDER BY seq DESC LIMIT ?",
                (REQUESTS_KEPT,),
            ).fetchall()
        ):
            p.requests.decisions[rid] = (seq, decode(decision))
        return p

    def all_runs(self, limit: int = 5000) -> list[RunView]:
        """The ``limit`` runs changed last, oldest first (the board's ADW list)."""
        columns = ", ".join(_RUN_COLUMNS)
        rows = self._conn.execute(
            f"SELECT {columns} FROM runs ORDER BY last_seq DESC LIMIT ?", (limit,)
        ).fetchall()
        return [_run_view(row) for row in reversed(rows)]

    def lineage_of(self, adw_id: str) -> tuple[str, ...] | None:
        """The stages completed runs of ``adw_id`` covered, or None if no run has it
        (for an adw_id older than the ones a start loads)."""
        row = self._conn.execute("SELECT data FROM lineage WHERE adw_id = ?", (adw_id,)).fetchone()
        if row is None:
            return None
        return tuple(msgspec.json.decode(row[0], type=_LineageRow).completed)

    def runs_of(self, adw_id: str) -> list[RunView]:
        """Every run of an adw_id the views hold (one per workflow type), oldest first."""
        columns = ", ".join(_RUN_COLUMNS)
        rows = self._conn.execute(
            f"SELECT {columns} FROM runs WHERE adw_id = ? ORDER BY last_seq", (adw_id,)
        )
        return [_run_view(row) for row in rows]

    def audit(
        self,
        *,
        adw_id: str | None = None,
        principal: str | None = None,
        outcome: str | None = None,
        since_ts: float | None = None,
        limit: int | None = None,
    ) -> Iterator[AuditEntry]:
        """Audit entries, oldest first, filtered."""
        where: list[str] = ["1 = 1"]
        params: list[str | float] = []
        for column, value in (("adw_id", adw_id), ("principal", principal), ("outcome", outcome)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if since_ts is not None:
            where.append("ts >= ?")
            params.append(since_ts)
        columns = ", ".join(_AUDIT_COLUMNS)
        sql = f"SELECT {columns} FROM audit WHERE {' AND '.join(where)} ORDER BY seq"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        for row in self._conn.execute(sql, params):
            yield AuditEntry(*row)

    def reset(self) -> None:
        """Forget every view (the log was restored or replaced)."""
        with self._conn:
            for table in (
                "runs", "type_metrics", "audit", "lineage", "recovery_outcomes", "requests",
                "checkpoint",
            ):  # fmt: skip
                self._conn.execute(f"DELETE FROM {table}")

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


def _run_row(v: RunView) -> tuple[Any, ...]:
    return (
        v.request.adw_id, v.request.workflow_type, v.status, v.queued_seq, v.last_seq,
        v.progress_percent, v.current_step, v.message, v.queued_ts, v.started_ts, v.ended_ts,
        v.duration_s, v.pid, v.proc_start, v.expected_s, v.exit_code, int(v.cancelled),
        _encode(v.resource_usage).decode(), _encode(v.request).decode(), v.stage,
    )  # fmt: skip


def _run_view(row: tuple[Any, ...]) -> RunView:
    (_a, _w, status, queued_seq, last_seq, progress, step, message, queued_ts, started_ts,
     ended_ts, duration_s, pid, proc_start, expected_s, exit_code, cancelled, usage,
     request, stage) = row  # fmt: skip
    return RunView(
        request=_request.decode(request),
        queued_seq=queued_seq,
        status=status,
        progress_percent=progress,
        current_step=step,
        last_seq=last_seq,
        message=message,
        queued_ts=queued_ts,
        started_ts=started_ts,
        ended_ts=ended_ts,
        duration_s=duration_s,
        pid=pid,
        proc_start=proc_start,
        expected_s=expected_s,
        exit_code=exit_code,
        cancelled=bool(cancelled),
        resource_usage=_usage.decode(usage),
        stage=stage or "",
    )


def catch_up(
    views: ViewStore, store: EventStore, *, chunk: int = 10_000, until: int | None = None
) -> Projections:
    """Load the views at their checkpoint and fold every later event of the log.

    Starts from zero when the views belong to another epoch of the log, or
    claim more than the log holds (it was restored from an older copy).
    """
    seq, epoch = views.checkpoint()
    if epoch != store.epoch or seq > store.last_seq():
        views.reset()
        projections = Projections()
    else:
        projections = views.load()
    pending = 0
    for stored in store.read(projections.seq, until=until):
        projections.apply(stored)
        pending += 1
        if pending >= chunk:
            views.save(projections, store.epoch)
            pending = 0
    views.save(projections, store.epoch)
    return projections


class _LineageRow(msgspec.Struct, frozen=True):
    """One adw_id's lineage, as stored."""

    completed: list[str]
    failures: list[Failure]
    pending: list[tuple[str, str, str]]  # workflow_type, error class, option
    ended: list[RunQueued] = []  # failed, their error_report not folded yet


def _lineage_rows(lineage: LineageProjection, adw_ids: set[str]) -> dict[str, _LineageRow]:
    """The rows of the adw_ids that changed, each folded once (one pass over the
    failures, the pending recoveries and the reports awaited, not one per adw_id)."""
    failures: dict[str, list[Failure]] = {}
    for (adw_id, _), error_id in lineage.last_failure.items():
        if adw_id in adw_ids and error_id in lineage.failures:
            failures.setdefault(adw_id, []).append(lineage.failures[error_id])
    pending: dict[str, list[tuple[str, str, str]]] = {}
    for (adw_id, kind), (error_class, option) in lineage.pending.items():
        if adw_id in adw_ids:
            pending.setdefault(adw_id, []).append((kind, error_class, option))
    ended: dict[str, list[RunQueued]] = {}
    for (adw_id, _), run in lineage.ended.items():
        if adw_id in adw_ids:
            ended.setdefault(adw_id, []).append(run)
    return {
        a: _LineageRow(
            sorted(lineage.completed.get(a, ())),
            failures.get(a, []),
            pending.get(a, []),
            ended.get(a, []),
        )
        for a in adw_ids
    }


def _load_lineage(conn: sqlite3.Connection, p: Projections) -> None:
    """Restore the lineage fold: per adw_id rows, outcomes, and what it shares
    with the other projections (recent durations, the active runs' stages)."""
    lineage = p.lineage
    lineage.seq = p.seq
    decode = msgspec.json.Decoder(_LineageRow).decode
    failures: list[Failure] = []
    newest = conn.execute(
        "SELECT adw_id, data FROM lineage ORDER BY seq DESC LIMIT ?", (KEEP_LINEAGE,)
    ).fetchall()
    for adw_id, data in reversed(newest):
        row = decode(data)
        lineage.known.add(adw_id)
        if row.completed:
            lineage.completed[adw_id] = set(row.completed)
        failures += row.failures
        for workflow_type, error_class, option in row.pending:
            lineage.pending[(adw_id, workflow_type)] = (error_class, option)
        for run in row.ended:
            lineage.ended[(adw_id, run.workflow_type)] = run
    for failure in sorted(failures, key=lambda f: f.seq)[-MAX_FAILURES:]:
        lineage.failures[failure.error_id] = failure
        lineage.last_failure[(failure.adw_id, failure.workflow_type)] = failure.error_id
    for error_class, option, tried, completed in conn.execute(
        "SELECT error_class, option, tried, completed FROM recovery_outcomes"
    ):
        lineage.outcomes[(error_class, option)] = Outcomes(tried, completed)
    for name, m in p.metrics.types.items():
        if m.recent:  # the same completed durations, folded once in metrics
            lineage.durations[name] = deque(m.recent, maxlen=RECENT)
    for view in p.runs.runs.values():
        if view.status in ("queued", "running"):
            lineage.active[view.key] = view.request
