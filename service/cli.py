"""The ``adwd`` command line: a thin shell over the library."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adwd.events.errors import AdwdError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from adwd.events.store import StoredEvent

PIPE_WIDTH = 200  # columns of human output to a file or a pipe (COLUMNS overrides)


def _serve(args: argparse.Namespace) -> int:
    from adwd.service.app import Service
    from adwd.service.config import load_config
    from adwd.service.logs import configure_logging

    config = load_config(
        args.config,
        overrides={
            "host": args.host,
            "port": args.port,
            "data_dir": args.data_dir,
            "log_format": args.log_format,
            "insecure": True if args.insecure else None,
        },
    )
    configure_logging(config.log_format)  # main() set up plain lines before the config was known
    stop = threading.Event()
    signals: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        signals.append(signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    reload = threading.Event()
    signal.signal(signal.SIGHUP, lambda _signum, _frame: reload.set())
    service = Service(config)
    service.start()
    scheme = "wss" if config.security.tls_cert else "ws"
    print(
        f"adwd: serving {scheme}://{config.host}:{service.port}/ws/trigger "
        f"(event log {service.events_path}); Ctrl-C to stop",
        file=sys.stderr,
        flush=True,
    )
    while not stop.wait(0.5):
        if reload.is_set():  # SIGHUP: the TLS certificate was renewed
            reload.clear()
            service.reload_tls()
        if service.fatal.is_set():
            service.stop(service.fatal_reason, fatal=True)
            print(f"adwd: stopped: {service.fatal_reason}", file=sys.stderr, flush=True)
            return 1
    service.stop(f"signal {signals[0]}" if signals else "shutdown")
    print("adwd: stopped cleanly", file=sys.stderr, flush=True)
    return 0


def _schema(_args: argparse.Namespace) -> int:
    from adwd.events.schema import protocol_schema

    sys.stdout.write(protocol_schema().decode() + "\n")
    return 0


# -- debugging commands: thin printers over service.debug ------------------------

_TYPE_STYLES = {
    "run_completed": "green",
    "run_failed": "bold red",
    "trigger_rejected": "red",
    "error_reported": "bold red",
    "orphan_stopped": "red",
    "run_queued": "yellow",
    "trigger_deduplicated": "yellow",
    "run_started": "cyan",
    "run_progress": "blue",
    "service_started": "magenta",
    "service_stopped": "magenta",
}
_STATUS_STYLES = {
    "completed": "green",
    "failed": "bold red",
    "cancelled": "yellow",
    "running": "cyan",
    "queued": "yellow",
    "accepted": "green",
    "rejected": "red",
    "deduplicated": "yellow",
}


def _data_dir(args: argparse.Namespace) -> Path:
    from adwd.service.config import load_config

    return load_config(args.config, overrides={"data_dir": args.data_dir}).data_path


def _console() -> Console:
    from rich.console import Console

    console = Console(highlight=False, emoji=False, markup=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPE_WIDTH  # a file or a pipe: do not fold tables at 80 columns
    return console


def _json_line(value: object) -> None:
    import msgspec

    sys.stdout.write(msgspec.json.encode(value).decode() + "\n")
    sys.stdout.flush()


def _cell(value: object, style: str = "") -> Text:
    from rich.text import Text

    return Text("-" if value is None or value == "" else str(value), style=style)


def _event_line(stored: StoredEvent) -> Text:
    from rich.text import Text

    from adwd.service.debug import describe, format_ts

    line = Text()
    line.append(f"{stored.seq:>6}  ", style="bold")
    line.append(f"{format_ts(stored.ts)}  ", style="dim")
    line.append(f"{stored.stream:<24} ", style="blue")
    line.append(f"{stored.type:<21} ", style=_TYPE_STYLES.get(stored.type, ""))
    line.append(describe(stored.event))
    if stored.principal != "system":
        line.append(f"  (by {stored.principal})", style="dim")
    return line


def _events(args: argparse.Namespace) -> int:
    from adwd.service.debug import (
        EventQuery,
        follow_events,
        open_events,
        parse_bound,
        select_events,
    )

    query = EventQuery(
        since=parse_bound(args.since) if args.since else None,
        until=parse_bound(args.until) if args.until else None,
        adw_id=args.adw_id,
        stream=args.stream,
        types=tuple(args.type or ()),
    )
    console = None if args.json else _console()
    if args.follow:
        # Ctrl-C ends a follow even when started with SIGINT ignored (as a
        # non-interactive shell starts background jobs): it is how one stops it.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    with open_events(_data_dir(args)) as store:
        events = follow_events(store, query) if args.follow else select_events(store, query)
        try:
            for stored in events:
                if console is None:
                    _json_line(stored)
                else:
                    console.print(_event_line(stored), soft_wrap=True)
        except KeyboardInterrupt:
            return 0
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from rich.table import Table
    from rich.text import Text

    from adwd.service.debug import format_duration, format_ts, inspect_run, open_events

    with open_events(_data_dir(args)) as store:
        runs = inspect_run(store, args.adw_id)
    if not runs:
        print(f"adwd: no events for adw_id {args.adw_id!r} in {store.path}", file=sys.stderr)
        return 1
    if args.json:
        for run in runs:
            _json_line(run)
        return 0
    console = _console()
    for number, run in enumerate(runs, start=1):
        header = Text(f"Run {number} of {len(runs)}: {run.workflow_type or '?'} for {run.adw_id}: ")
        header.append(run.status, style=_STATUS_STYLES.get(run.status, "bold"))
        console.print(header, soft_wrap=True)
        console.print(Text(f"  logs: {run.logs_path or 'unknown'}"), soft_wrap=True)
        table = Table(box=None, pad_edge=False)
        for column in ("seq", "time", "delta", "elapsed", "type", "what"):
            table.add_column(column, justify="right" if column in ("seq", "delta") else "left")
        for step in run.steps:
            table.add_row(
                _cell(step.seq),
                _cell(format_ts(step.ts), "dim"),
                _cell(None if step.delta_s is None else "+" + format_duration(step.delta_s)),
                _cell(format_duration(step.elapsed_s)),
                _cell(step.type, _TYPE_STYLES.get(step.type, "")),
                _cell(step.summary),
            )
        console.print(table)
        outcome = Text("  outcome: ")
        outcome.append(run.status, style=_STATUS_STYLES.get(run.status, "bold"))
        if run.status in ("failed", "cancelled"):
            outcome.append(f": {run.reason}")
            if run.exit_code is not None:
                outcome.append(f" (exit code {run.exit_code})")
        outcome.append(
            f"; waited {format_duration(run.wait_s)}, ran {format_duration(run.duration_s)}"
        )
        console.print(outcome, soft_wrap=True)
        if number < len(runs):
            console.print()
    return 0


def _replay(args: argparse.Namespace) -> int:
    from rich.table import Table
    from rich.text import Text

    from adwd.service.debug import format_duration, format_ts, open_events, parse_bound, replay

    until = parse_bound(args.until)
    with open_events(_data_dir(args)) as store:
        state = replay(store, until)
    if args.json:
        _json_line(state)
        return 0
    console = _console()
    console.print(
        Text(
            f"Projections at seq {state.seq} ({format_ts(state.at)}), "
            f"max_concurrent {state.max_concurrent}",
            style="bold",
        ),
        soft_wrap=True,
    )
    runs = Table(title="Runs", title_justify="left", box=None, pad_edge=False)
    for column in ("adw_id", "workflow_type", "status", "progress", "step", "message"):
        runs.add_column(column)
    for run in state.runs:
        runs.add_row(
            _cell(run.adw_id), _cell(run.workflow_type),
            _cell(run.status, _STATUS_STYLES.get(run.status, "")),
            _cell(f"{run.progress_percent}%"), _cell(run.current_step), _cell(run.message),
        )  # fmt: skip
    queue = Table(title="Queue", title_justify="left", box=None, pad_edge=False)
    for column in ("position", "adw_id", "workflow_type", "estimated_wait"):
        queue.add_column(column)
    for entry in state.queue:
        queue.add_row(
            _cell(f"{entry.position}/{entry.queue_length}"), _cell(entry.adw_id),
            _cell(entry.workflow_type), _cell(format_duration(entry.estimated_wait_s)),
        )  # fmt: skip
    metrics = Table(title="Metrics", title_justify="left", box=None, pad_edge=False)
    for column in ("workflow_type", "runs", "completed", "failed", "success", "p50", "p90"):
        metrics.add_column(column)
    for name, m in state.metrics.items():
        rate = None if m["success_rate"] is None else f"{100 * m['success_rate']:.0f}%"
        metrics.add_row(
            _cell(name), _cell(m["runs"]), _cell(m["completed"]), _cell(m["failed"]),
            _cell(rate), _cell(format_duration(m["duration_p50"])),
            _cell(format_duration(m["duration_p90"])),
        )  # fmt: skip
    for table, empty in ((runs, "no runs"), (queue, "nobody waiting"), (metrics, "no run ended")):
        console.print()
        console.print(table if table.row_count else Text(f"{table.title}: {empty}"))
    return 0


def _security_audit(args: argparse.Namespace) -> int:
    from rich.table import Table

    from adwd.service.audit import security_entries
    from adwd.service.debug import format_ts

    entries = security_entries(
        _data_dir(args), principal=args.principal, address=args.address, outcome=args.outcome,
        since=args.since, until=args.until, limit=args.limit,
    )  # fmt: skip
    if args.json:
        for entry in entries:
            _json_line(entry)
        return 0
    table = Table(box=None, pad_edge=False)
    columns = ("seq", "time", "principal", "address", "connection", "action", "outcome", "reason")
    for column in columns:
        table.add_column(column, overflow="fold")
    for e in entries:
        table.add_row(
            _cell(e.seq), _cell(format_ts(e.ts), "dim"), _cell(e.principal), _cell(e.address),
            _cell(e.connection_id), _cell(e.action), _cell(e.outcome), _cell(e.reason),
        )  # fmt: skip
    _console().print(table if entries else "no audit entries match")
    return 0


def _audit(args: argparse.Namespace) -> int:
    from rich.table import Table

    from adwd.service.debug import audit_entries, format_ts, open_views

    if args.security or args.address or args.until:
        return _security_audit(args)

    with open_views(_data_dir(args)) as views:
        entries = audit_entries(
            views, adw_id=args.adw_id, principal=args.principal, outcome=args.outcome,
            since=args.since, limit=args.limit,
        )  # fmt: skip
    if args.json:
        for entry in entries:
            _json_line(entry)
        return 0
    table = Table(box=None, pad_edge=False)
    columns = ("seq", "time", "principal", "command", "adw_id", "workflow_type", "outcome")
    for column in (*columns, "reason"):
        table.add_column(column, overflow="fold")
    for e in entries:
        table.add_row(
            _cell(e.seq), _cell(format_ts(e.ts), "dim"), _cell(e.principal), _cell(e.command),
            _cell(e.adw_id), _cell(e.workflow_type),
            _cell(e.outcome, _STATUS_STYLES.get(e.outcome, "")), _cell(e.reason),
        )  # fmt: skip
    _console().print(table if entries else "no audit entries match")
    return 0


def _backup(args: argparse.Namespace) -> int:
    from adwd.service.backup import backup_log

    report = backup_log(_data_dir(args), args.dest, force=args.force)
    if args.json:
        _json_line(report)
        return 0
    print(f"adwd: backed up {report.source} to {report.path}")
    for name, value in (
        ("events", f"{report.events} (last seq {report.last_seq})"),
        ("bytes", report.bytes),
        ("integrity", report.integrity),
        ("epoch", f"{report.epoch} (new: once restored, the copy is told from the live log)"),
        ("took", f"{report.seconds:.3f}s"),
    ):
        print(f"  {name:<10} {value}")
    return 0


# -- security commands: thin shells over service.security (docs/security.md) -----


def _token_create(args: argparse.Namespace) -> int:
    from adwd.service.config import load_config
    from adwd.service.security import create_token

    config = load_config(args.config)
    token, expires_at = create_token(
        config.security,
        args.user,
        args.permission,
        ttl_s=args.ttl,
        workflow_types=args.workflow_type,
        own_runs_only=args.own_runs,
    )
    if args.json:
        _json_line({"token": token, "user_id": args.user, "expires_at": expires_at})
    else:
        print(token)
        print(f"adwd: token for {args.user!r}, expires {expires_at}", file=sys.stderr)
    return 0


def _key_create(args: argparse.Namespace) -> int:
    import secrets

    from adwd.actors.auth import api_key_hash

    key = secrets.token_urlsafe(32)
    print(f"key (give it to the client; adwd never stores it): {key}")
    print("config (the key's hash):")
    print("[[security.api_keys]]")
    print(f'key_id = "{args.key_id}"')
    print(f'sha256 = "{api_key_hash(key)}"')
    print(f'user_id = "{args.user}"')
    print(f"permissions = {list(args.permission)!r}".replace("'", '"'))
    return 0


def _add_security_commands(sub: Any) -> None:
    from adwd.actors.auth import Permission

    perms = [p.value for p in Permission]
    token = sub.add_parser("token", help="service tokens (docs/security.md)")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="sign a token with the config's current key")
    create.add_argument("--config", help="TOML config file with [security] (ADWD_CONFIG)")
    create.add_argument("--user", required=True, help="the principal's user_id")
    create.add_argument(
        "--permission", action="append", required=True, choices=perms, metavar="PERM",
        help=f"a permission (repeatable): {', '.join(perms)}",
    )  # fmt: skip
    create.add_argument("--ttl", type=float, metavar="S", help="seconds valid (token_ttl_s)")
    create.add_argument(
        "--workflow-type", action="append", metavar="TYPE",
        help="only these workflow types (repeatable)",
    )  # fmt: skip
    create.add_argument("--own-runs", action="store_true", help="only runs it started")
    create.add_argument("--json", action="store_true", help="one JSON object")
    create.set_defaults(func=_token_create)
    key = sub.add_parser("key", help="API keys (docs/security.md)")
    key_sub = key.add_subparsers(dest="key_command", required=True)
    key_create = key_sub.add_parser("create", help="a new API key and its config entry")
    key_create.add_argument("--key-id", required=True, help="the key's id (for rotation)")
    key_create.add_argument("--user", required=True, help="the principal's user_id")
    key_create.add_argument(
        "--permission", action="append", required=True, choices=perms, metavar="PERM",
        help="a permission (repeatable)",
    )  # fmt: skip
    key_create.set_defaults(func=_key_create)


def _store_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--data-dir", help="where the service keeps its data (ADWD_DATA_DIR)")
    options.add_argument("--config", help="TOML config file giving data_dir (ADWD_CONFIG)")
    options.add_argument("--json", action="store_true", help="one JSON object per line")
    return options


def _add_debug_commands(sub: Any) -> None:
    from adwd.service.debug import AUDIT_OUTCOMES, EVENT_TYPES

    store = [_store_options()]
    bound = "SEQ|TIME"
    events = sub.add_parser("events", parents=store, help="show events of the log")
    which = events.add_mutually_exclusive_group()
    which.add_argument("--adw-id", help="only the events of this adw_id (stream workflow:ID)")
    which.add_argument("--stream", help="only the events of this stream")
    events.add_argument(
        "--type", action="append", choices=EVENT_TYPES, metavar="TYPE",
        help="only events of this type (repeatable)",
    )  # fmt: skip
    events.add_argument("--since", metavar=bound, help="from this seq or time (inclusive)")
    events.add_argument("--until", metavar=bound, help="up to this seq or time (inclusive)")
    events.add_argument("--follow", action="store_true", help="then wait for new events")
    events.set_defaults(func=_events)
    inspect = sub.add_parser("inspect", parents=store, help="the timeline of one adw_id's runs")
    inspect.add_argument("adw_id", metavar="ADW_ID")
    inspect.set_defaults(func=_inspect)
    replay = sub.add_parser("replay", parents=store, help="the projections at a point of the log")
    replay.add_argument("--until", required=True, metavar=bound, help="last seq or time to fold")
    replay.set_defaults(func=_replay)
    audit = sub.add_parser("audit", parents=store, help="commands received and their outcome")
    audit.add_argument("--adw-id", help="only commands for this adw_id")
    audit.add_argument("--principal", help="only commands sent by this principal")
    audit.add_argument(
        "--outcome",
        metavar="OUTCOME",
        help=f"only this outcome: {', '.join(AUDIT_OUTCOMES)}; with --security also opened, "
        "closed, success, failure, unauthenticated, forbidden, rate_limited, disconnected",
    )
    audit.add_argument("--since", metavar="TIME", help="only commands at or after this time")
    audit.add_argument("--limit", type=int, metavar="N", help="at most N entries (oldest first)")
    audit.add_argument(
        "--security", action="store_true",
        help="the security trail: connections, authentication, denials, limits and commands, "
        "with addresses (docs/security.md)",
    )  # fmt: skip
    audit.add_argument("--address", help="only this client address (implies --security)")
    audit.add_argument("--until", metavar="TIME", help="only up to this time (implies --security)")
    audit.set_defaults(func=_audit)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``adwd`` command."""
    from adwd import __version__

    parser = argparse.ArgumentParser(prog="adwd", description="ADW workflow service.")
    parser.add_argument("--version", action="version", version=f"adwd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the service")
    serve.add_argument("--host", help="address to listen on (ADWD_HOST; default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (ADWD_PORT; default 8500)")
    serve.add_argument("--data-dir", help="event log and run logs (ADWD_DATA_DIR; default ./data)")
    serve.add_argument("--config", help="TOML config file (ADWD_CONFIG)")
    serve.add_argument(
        "--log-format", choices=("plain", "json"),
        help="log lines on stderr: plain text or one JSON object each (ADWD_LOG_FORMAT)",
    )  # fmt: skip
    serve.add_argument(
        "--insecure", action="store_true",
        help="listen beyond loopback without authentication (refused otherwise; docs/security.md)",
    )  # fmt: skip
    serve.set_defaults(func=_serve)
    schema = sub.add_parser("schema", help="print the JSON Schema of the protocol")
    schema.set_defaults(func=_schema)
    from adwd.service.client_cli import add_commands

    add_commands(sub)
    _add_debug_commands(sub)
    _add_security_commands(sub)
    backup = sub.add_parser(
        "backup", parents=[_store_options()], help="copy the event log (safe while serving)"
    )
    backup.add_argument("dest", metavar="DEST", help="a new file, or a directory to put it in")
    backup.add_argument("--force", action="store_true", help="replace DEST if it is a file")
    backup.set_defaults(func=_backup)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``adwd`` console script."""
    from adwd.service.logs import configure_logging

    args = build_parser().parse_args(argv)
    configure_logging("plain")  # `adwd serve` switches to its config's log_format
    try:
        return int(args.func(args))
    except AdwdError as exc:
        print(f"adwd: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `adwd events --json | head`: as Python's docs advise (and rich does)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
