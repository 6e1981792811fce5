"""The ``adwd`` commands that talk to a running service: trigger, status, cancel, watch.

A thin shell over :mod:`transport.client` (WebSocket) and the HTTP read API.
Where to connect: ``--url``, else ``$ADWD_URL``, else the config file's
host and port (``--config`` or ``$ADWD_CONFIG``), else 127.0.0.1:8500.
With authentication on, ``$ADWD_TOKEN`` holds the bearer token (an
environment variable, not a flag: flags show in ``ps`` and shell history).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import msgspec

from adwd.events.errors import AdwdError
from adwd.events.wire import StatusUpdate, WorkflowLog

EXIT_COMPLETED, EXIT_FAILED, EXIT_REJECTED, EXIT_CANCELLED = 0, 1, 2, 3
LEVEL_STYLE = {"ERROR": "red", "WARNING": "yellow", "SUCCESS": "green", "INFO": ""}


class Unreachable(AdwdError):
    """The service did not answer at the address the CLI was given."""


STATUS_STYLE = {"failed": "red", "cancelled": "yellow", "completed": "green", "running": "cyan"}


def endpoints(url: str | None, config: str | None) -> tuple[str, str]:
    """``(ws_url, http_base)`` from a flag, the environment or the config file."""
    url = url or os.environ.get("ADWD_URL")
    if not url:
        from adwd.service.config import load_config

        cfg = load_config(config)
        host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
        url = f"http://{host}:{cfg.port}"
    parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
    secure = parts.scheme in ("https", "wss")
    ws = f"{'wss' if secure else 'ws'}://{parts.netloc}/ws/trigger"
    return ws, f"{'https' if secure else 'http'}://{parts.netloc}"


def token() -> str | None:
    """The bearer token of ``$ADWD_TOKEN`` (docs/security.md), if set."""
    return os.environ.get("ADWD_TOKEN") or None


def get_json(base: str, path: str) -> Any:
    """GET a JSON document from the service's HTTP read API."""
    bearer = token()
    request = urllib.request.Request(
        base + path, headers={"Authorization": f"Bearer {bearer}"} if bearer else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return json.loads(exc.read() or b"null")
    except OSError as exc:
        raise Unreachable(
            f"cannot reach adwd at {base} ({exc}); is it running (make run)? "
            "Pass --url or set ADWD_URL."
        ) from exc


async def trigger(args: argparse.Namespace, ws_url: str) -> int:
    """Trigger a run; with ``--follow``, show it to its end and return its outcome."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn

    from adwd.transport.client import AdwdClient, ConnectFailed, TriggerRejected

    console = Console(stderr=args.json)
    try:
        async with AdwdClient(ws_url, token=token()) as client:
            try:
                response = await client.trigger(
                    args.workflow_type,
                    issue_number=args.issue,
                    adw_id=args.adw_id,
                    model_set=args.model_set,
                    trigger_reason=args.reason,
                )
            except TriggerRejected as rejected:
                _out(args, rejected.data, console, f"rejected: {rejected.data.message}")
                return EXIT_REJECTED
            _out(args, response, console, f"accepted {response.adw_id} ({response.logs_path})")
            if not args.follow:
                return EXIT_COMPLETED
            final: StatusUpdate | None = None
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                console=console,
                transient=False,
                disable=args.json,
            ) as progress:
                bar = progress.add_task(args.workflow_type, total=100)
                async for message in client.follow(response.adw_id):
                    if args.json:
                        print(msgspec.json.encode(message).decode(), flush=True)
                    if isinstance(message, StatusUpdate):
                        d = message.data
                        progress.update(
                            bar,
                            completed=d.progress_percent,
                            description=f"{args.workflow_type}: {d.current_step}",
                        )
                        if d.status in ("completed", "failed"):
                            final = message
                    elif isinstance(message, WorkflowLog) and not args.json:
                        style = LEVEL_STYLE.get(message.data.level, "")
                        progress.console.print(
                            f"[{style}]{message.data.message}[/]"
                            if style
                            else message.data.message,
                            markup=bool(style),
                        )
    except ConnectFailed as exc:
        raise Unreachable(
            f"cannot reach adwd at {ws_url}: {exc}. Is it running (make run)?"
        ) from exc
    if final is None:
        return EXIT_FAILED
    if not args.json:
        console.print(f"{final.data.status}: {final.data.message}")
    if final.data.status == "completed":
        return EXIT_COMPLETED
    return EXIT_CANCELLED if final.data.cancelled else EXIT_FAILED


async def cancel(args: argparse.Namespace, ws_url: str) -> int:
    """Cancel the runs of an adw_id."""
    from adwd.transport.client import AdwdClient, ConnectFailed

    try:
        async with AdwdClient(ws_url, token=token()) as client:
            answer = await client.cancel(args.adw_id, args.reason)
    except ConnectFailed as exc:
        raise Unreachable(
            f"cannot reach adwd at {ws_url}: {exc}. Is it running (make run)?"
        ) from exc
    if args.json:
        print(msgspec.json.encode(answer).decode())
    else:
        print(f"{answer.status}: {answer.message}")
    return EXIT_COMPLETED if answer.status == "cancelling" else EXIT_FAILED


def status_document(base: str) -> dict[str, Any]:
    """Runs, queue, metrics and health in one document."""
    overview: dict[str, Any] = get_json(base, "/api/runs")  # a JSON object
    overview["health"] = get_json(base, "/health")
    return overview


def render_status(doc: dict[str, Any]) -> Any:
    """The status document as rich renderables (a group of tables)."""
    from rich.console import Group
    from rich.table import Table

    health = doc["health"]
    runs = Table(title="runs", expand=False)
    for column in ("adw_id", "workflow", "status", "stage", "progress", "step / message"):
        runs.add_column(column)
    for run in doc["runs"]:
        style = {
            "failed": "red",
            "cancelled": "yellow",
            "completed": "green",
            "running": "cyan",
        }.get(run["status"], "")
        runs.add_row(
            run["adw_id"],
            run["workflow_name"],
            f"[{style}]{run['status']}[/]" if style else run["status"],
            run["stage"],
            f"{run['progress_percent']}%",
            (run["current_step"] or run["message"] or "")[:60],
        )
    queue = Table(title="queue")
    for column in ("position", "adw_id", "workflow", "estimated wait (s)"):
        queue.add_column(column)
    for entry in doc["queue"]:
        queue.add_row(
            str(entry["position"]),
            entry["adw_id"],
            entry["workflow_type"],
            f"{entry['estimated_wait_time']:.1f}",
        )
    line = (
        f"health: {health.get('status')}  connections: {health.get('active_connections')}  "
        f"uptime: {health.get('uptime', 0):.0f} s  seq: {doc.get('seq')}"
    )
    return Group(line, runs, queue)


def status(args: argparse.Namespace, base: str) -> int:
    """Print runs, queue and health."""
    doc = status_document(base)
    if args.json:
        print(json.dumps(doc))
        return EXIT_COMPLETED
    from rich.console import Console

    Console().print(render_status(doc))
    return EXIT_COMPLETED


async def watch(args: argparse.Namespace, ws_url: str, base: str) -> int:
    """A live dashboard: runs, queue and health, redrawn as events arrive."""
    from rich.live import Live

    from adwd.transport.client import AdwdClient

    if args.once:
        status(argparse.Namespace(json=False), base)
        return EXIT_COMPLETED
    loop = asyncio.get_running_loop()
    async with AdwdClient(ws_url, token=token()) as client:
        doc = await loop.run_in_executor(None, status_document, base)
        with Live(render_status(doc), refresh_per_second=4) as live:
            changes = client.messages()
            while True:
                with contextlib.suppress(TimeoutError):  # redraw at least every interval
                    await asyncio.wait_for(anext(changes), timeout=args.interval)
                doc = await loop.run_in_executor(None, status_document, base)
                live.update(render_status(doc))


def _out(args: argparse.Namespace, data: msgspec.Struct, console: Any, text: str) -> None:
    if args.json:
        print(msgspec.json.encode(data).decode(), flush=True)
    else:
        console.print(text, markup=False)


def add_commands(sub: Any) -> None:
    """Register trigger, status, cancel and watch on the ``adwd`` parser."""

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--url", help="the service, e.g. http://127.0.0.1:8500 (ADWD_URL)")
        parser.add_argument("--config", help="TOML config file to take host and port from")
        parser.add_argument("--json", action="store_true", help="JSON for scripts")

    p = sub.add_parser("trigger", help="trigger a workflow run (and follow it)")
    p.add_argument("workflow_type")
    p.add_argument("--issue", help="issue number")
    p.add_argument("--adw-id", help="run id (default: the service picks one)")
    p.add_argument("--model-set", choices=("base", "heavy"), default="base")
    p.add_argument("--reason", help="trigger reason (at most 500 characters)")
    p.add_argument("--follow", action="store_true", help="show progress; exit with the outcome")
    common(p)
    p.set_defaults(func=lambda a: asyncio.run(trigger(a, endpoints(a.url, a.config)[0])))

    p = sub.add_parser("status", help="runs, queue and health of a running service")
    common(p)
    p.set_defaults(func=lambda a: status(a, endpoints(a.url, a.config)[1]))

    p = sub.add_parser("cancel", help="cancel the queued and running runs of an adw_id")
    p.add_argument("adw_id")
    p.add_argument("--reason", default="cancelled from the command line")
    common(p)
    p.set_defaults(func=lambda a: asyncio.run(cancel(a, endpoints(a.url, a.config)[0])))

    p = sub.add_parser("watch", help="a live dashboard of runs, queue and health")
    p.add_argument("--interval", type=float, default=2.0, help="refresh at least this often (s)")
    p.add_argument("--once", action="store_true", help="draw once and exit")
    common(p)
    p.set_defaults(func=lambda a: asyncio.run(watch(a, *endpoints(a.url, a.config))))


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use the adwd command")
