"""The progress line format workflows print on stdout.

One line: ``ADW-PROGRESS `` then a JSON object with any of
``progress_percent`` (int 0..100), ``current_step`` and ``message``. See
docs/workflows.md. A malformed progress line is an ordinary log line.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta, Struct

from adwd.actors.messages import Progress

PREFIX = b"ADW-PROGRESS "


class ProgressLine(Struct, frozen=True, forbid_unknown_fields=False):
    """The JSON part of a progress line."""

    progress_percent: Annotated[int, Meta(ge=0, le=100)] | None = None
    current_step: Annotated[str, Meta(max_length=200)] | None = None
    message: Annotated[str, Meta(max_length=2000)] | None = None


_decoder = msgspec.json.Decoder(ProgressLine)


def parse_progress_line(line: bytes) -> Progress | None:
    """The progress a stdout line reports, or None if it is not a valid progress line."""
    if not line.startswith(PREFIX):
        return None
    try:
        parsed = _decoder.decode(line[len(PREFIX) :])
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    return Progress(parsed.progress_percent, parsed.current_step, parsed.message)
