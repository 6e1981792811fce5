"""The ``adwd`` command line: a thin shell over the library."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from events.errors import AdwdError


def _serve(args: argparse.Namespace) -> int:
    from service.app import Service
    from service.config import load_config

    config = load_config(
        args.config,
        overrides={"host": args.host, "port": args.port, "data_dir": args.data_dir},
    )
    stop = threading.Event()
    signals: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        signals.append(signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    service = Service(config)
    service.start()
    print(
        f"adwd: serving ws://{config.host}:{service.port}/ws/trigger "
        f"(event log {service.events_path}); Ctrl-C to stop",
        file=sys.stderr,
        flush=True,
    )
    while not stop.wait(0.5):
        if service.fatal.is_set():
            service.stop("event log failure")
            return 1
    service.stop(f"signal {signals[0]}" if signals else "shutdown")
    print("adwd: stopped cleanly", file=sys.stderr, flush=True)
    return 0


def _schema(_args: argparse.Namespace) -> int:
    from events.schema import protocol_schema

    sys.stdout.write(protocol_schema().decode() + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``adwd`` command."""
    parser = argparse.ArgumentParser(prog="adwd", description="ADW workflow service.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the service")
    serve.add_argument("--host", help="address to listen on (ADWD_HOST; default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (ADWD_PORT; default 8500)")
    serve.add_argument("--data-dir", help="event log and run logs (ADWD_DATA_DIR; default ./data)")
    serve.add_argument("--config", help="TOML config file (ADWD_CONFIG)")
    serve.set_defaults(func=_serve)
    schema = sub.add_parser("schema", help="print the JSON Schema of the protocol")
    schema.set_defaults(func=_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``adwd`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args))
    except AdwdError as exc:
        print(f"adwd: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
