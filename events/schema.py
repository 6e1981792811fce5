"""JSON Schema of the protocol, generated from the wire Structs."""

from __future__ import annotations

import msgspec

from adwd.events.wire import ClientMessage, ServerMessage


def protocol_schema() -> bytes:
    """Both directions' tagged unions as one JSON Schema document (pretty-printed)."""
    schemas, components = msgspec.json.schema_components([ClientMessage, ServerMessage])
    doc = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "adwd WebSocket protocol",
        "description": "Messages a client sends (client) and the server sends (server).",
        "properties": {"client": schemas[0], "server": schemas[1]},
        "$defs": components,
    }
    return msgspec.json.format(msgspec.json.encode(doc), indent=2)
