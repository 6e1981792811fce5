"""Encoding and decoding of wire messages: one decoder per boundary.

``decode_client`` is the single entry point for inbound frames. It turns
every failure into a :class:`ProtocolError` whose code says what kind of
failure it was and whose details name the offending field.
"""

from __future__ import annotations

import re

import msgspec

from adwd.events.errors import ErrorCode, ProtocolError
from adwd.events.wire import CLIENT_TYPES, ClientMessage, ServerMessage

_client_decoder = msgspec.json.Decoder(ClientMessage)
_server_decoder = msgspec.json.Decoder(ServerMessage)
_encoder = msgspec.json.Encoder()

_PATH = re.compile(r" - at `\$\.?([^`]*)`$")
_MISSING = re.compile(r"missing required field `([^`]+)`")
_UNKNOWN_TAG = re.compile(r"^Invalid value .* - at `\$\.type`$")


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
