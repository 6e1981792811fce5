"""Encoding and decoding of wire messages: one decoder per boundary.

``decode_client`` is the single entry point for inbound frames. It turns
every failure into a :class:`ProtocolError` whose code says what kind of
failure it was and whose details name the offending field: a frame can end
in a message or in an error, never in an exception that escapes.
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any

import msgspec

from adwd.events.errors import AdwdError, ErrorCode, ProtocolError
from adwd.events.wire import CLIENT_TYPES, ClientMessage, ServerMessage

MAX_NESTING = 32
"""The deepest nesting of arrays and objects a client frame may have.

msgspec decodes recursively: a frame nested a few thousand levels deep
raises ``RecursionError`` (on any field typed ``Any``, such as
``issue_json``, or while merely skipping a value). No message of the
protocol needs more than a handful of levels.
"""

_client_decoder = msgspec.json.Decoder(ClientMessage)
_server_decoder = msgspec.json.Decoder(ServerMessage)
_encoder = msgspec.json.Encoder()

_PATH = re.compile(r" - at `\$\.?([^`]*)`$")
_MISSING = re.compile(r"missing required field `([^`]+)`")
_UNKNOWN_TAG = re.compile(r"^Invalid value .* - at `\$\.type`$")
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')  # a JSON string, escapes included
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPEN = frozenset(b"[{")


def encode(message: msgspec.Struct) -> bytes:
    """Encode any message (or event) as JSON bytes."""
    return _encoder.encode(message)


def decode_server(frame: bytes | str) -> ServerMessage:
    """Decode a frame sent by the server (used by clients and tests)."""
    return _server_decoder.decode(frame)


def decode_client(frame: bytes | str) -> ClientMessage:
    """Decode and validate a frame sent by a client.

    Raises:
        ProtocolError: with code ``invalid_json``, ``unknown_type`` or
            ``validation_error`` and ``details.field`` naming the field.
    """
    _check_nesting(frame)
    try:
        return _client_decoder.decode(frame)
    except msgspec.ValidationError as exc:
        raise _validation_problem(str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise ProtocolError(
            ErrorCode.INVALID_JSON,
            f"Message is not valid JSON ({exc}). Send one JSON object per frame, "
            'shaped {"type": ..., "data": {...}}.',
            {"reason": str(exc)},
        ) from exc
    except (RecursionError, MemoryError, ValueError, TypeError) as exc:
        # Whatever else the decoder raises ends as an answer to this frame,
        # never as an exception that takes the actor serving it down.
        raise ProtocolError(
            ErrorCode.INVALID_JSON,
            f"Message could not be decoded ({type(exc).__name__}). Send one JSON object "
            'per frame, shaped {"type": ..., "data": {...}}.',
            {"reason": type(exc).__name__},
        ) from exc


def nesting_depth(frame: bytes | str) -> int:
    """How deeply arrays and objects nest in a JSON text (brackets in strings excluded)."""
    raw = frame.encode() if isinstance(frame, str) else bytes(frame)
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    return max(accumulate(1 if b in _OPEN else -1 for b in brackets), default=0)


def _check_nesting(frame: bytes | str) -> None:
    # Counting the openers is cheap (C speed); only a frame with more of them
    # than the limit pays for the exact scan.
    opener_count = (
        frame.count("[") + frame.count("{")
        if isinstance(frame, str)
        else frame.count(b"[") + frame.count(b"{")
    )
    if opener_count <= MAX_NESTING:
        return
    depth = nesting_depth(frame)
    if depth > MAX_NESTING:
        raise ProtocolError(
            ErrorCode.VALIDATION_ERROR,
            f"Message nests {depth} levels deep; at most {MAX_NESTING} levels of arrays "
            "and objects are accepted. Flatten the data and send it again.",
            {"field": "", "reason": "nesting", "limit": MAX_NESTING},
        )


class Peek(msgspec.Struct, frozen=True):
    """Just enough of a rejected frame to answer it: what it tried to be."""

    type: Any = None
    data: Any = None
    request_id: Any = None


_peek = msgspec.json.Decoder(Peek)


def peek(frame: bytes | str) -> Peek:
    """The ``type``, ``data`` and ``request_id`` of a frame ``decode_client``
    rejected, or an empty Peek if even that cannot be read. Never raises."""
    try:
        _check_nesting(frame)
        return _peek.decode(frame)
    except (AdwdError, msgspec.DecodeError, RecursionError, MemoryError, ValueError, TypeError):
        return Peek()


def _validation_problem(text: str) -> ProtocolError:
    """Translate a msgspec validation message into a client-facing error."""
    if _UNKNOWN_TAG.match(text):
        return ProtocolError(
            ErrorCode.UNKNOWN_TYPE,
            f"Unknown message type ({text}). Known types: {', '.join(sorted(CLIENT_TYPES))}.",
            {"field": "type", "allowed": sorted(CLIENT_TYPES)},
        )
    field = ""
    path = _PATH.search(text)
    if path:
        field = path.group(1)
    missing = _MISSING.search(text)
    if missing:
        field = f"{field}.{missing.group(1)}" if field else missing.group(1)
    return ProtocolError(
        ErrorCode.VALIDATION_ERROR,
        f"Invalid message: {text}. Fix the field and send it again.",
        {"field": field, "reason": text},
    )


def field_path(problem: ProtocolError) -> str:
    """The offending field of a protocol error, or '' if there is none."""
    return str((problem.details or {}).get("field", ""))
