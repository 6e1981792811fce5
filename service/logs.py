"""The service's own log records on stderr: plain lines, or one JSON object per line.

``plain`` is for people (a terminal, ``journalctl``); ``json`` is for log
collectors (a container's log driver, Loki, Elasticsearch...). A record
that concerns a run or a connection says which with ``extra={"adw_id":
...}`` or ``extra={"connection": ...}``; the JSON form carries those as
fields, so a collector can filter on them.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any, Literal

import msgspec

LogFormat = Literal["plain", "json"]

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
EXTRA_FIELDS = ("adw_id", "connection")  # record attributes a JSON line carries when set

_encoder = msgspec.json.Encoder()


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in a message are escaped).

    Fields: ``ts`` (ISO 8601, UTC), ``level``, ``logger``, ``message``; ``adw_id``
    and ``connection`` when the record carries them; ``exc`` (the formatted
    traceback) when an exception was logged; ``stack`` with ``stack_info=True``.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON object, without a trailing newline."""
        doc: dict[str, Any] = {
            "ts": _iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in EXTRA_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                doc[name] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info:
            # Cached as logging.Formatter does, for any other handler of the record.
            record.exc_text = record.exc_text or self.formatException(record.exc_info)
        if record.exc_text:
            doc["exc"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        try:
            return _encoder.encode(doc).decode()
        except UnicodeEncodeError:
            # A lone surrogate (an undecodable file name, via surrogateescape) is not
            # valid UTF-8: escape it rather than lose the record.
            return _encoder.encode(_escape_surrogates(doc)).decode()


def _iso_utc(created: float) -> str:
    stamp = datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="milliseconds")
    return stamp.removesuffix("+00:00") + "Z"


def _escape_surrogates(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value.encode("utf-8", "backslashreplace").decode("utf-8")
        if isinstance(value, str)
        else value
        for key, value in doc.items()
    }


def make_formatter(fmt: LogFormat) -> logging.Formatter:
    """The formatter of a ``log_format`` setting."""
    return JsonFormatter() if fmt == "json" else logging.Formatter(PLAIN_FORMAT)


class _Handler(logging.StreamHandler[IO[str]]):
    """The stderr handler configure_logging installs (told apart from anyone else's)."""


def configure_logging(fmt: LogFormat = "plain", *, stream: IO[str] | None = None) -> None:
    """Log INFO and above to stderr (or ``stream``) in the given format.

    Called again, it switches the handler it installed to the new format, so
    ``adwd serve`` can start in ``plain`` and switch once its config is loaded.
    Like ``logging.basicConfig``, it leaves a root logger that someone else
    already gave handlers (an embedding application, pytest) alone.
    """
    root = logging.getLogger()
    ours = [h for h in root.handlers if isinstance(h, _Handler)]
    if ours:
        for handler in ours:
            handler.setFormatter(make_formatter(fmt))
            if stream is not None:
                handler.setStream(stream)
        return
    if root.handlers:
        return
    handler = _Handler(stream if stream is not None else sys.stderr)
    handler.setFormatter(make_formatter(fmt))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
