"""adwd.events.testing: a strategy for every wire message, whose messages the
codec round-trips and the published JSON Schema accepts; hypothesis stays optional."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Annotated, Any, Literal

import msgspec
import pytest
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st
from msgspec import Meta

from adwd.events.codec import decode_client, decode_server, encode
from adwd.events.domain import DOMAIN_EVENTS
from adwd.events.errors import ErrorCode
from adwd.events.schema import protocol_schema
from adwd.events.testing import (
    CLIENT_MESSAGE_TYPES,
    JSON_VALUES,
    SERVER_MESSAGE_TYPES,
    client_frames,
    client_messages,
    for_type,
    json_values,
    messages_of,
    server_frames,
    server_messages,
    tagged_types,
)
from adwd.events.wire import CLIENT_TYPES, ClientMessage, ErrorData, ServerMessage

ALL_TYPES = [*CLIENT_MESSAGE_TYPES, *SERVER_MESSAGE_TYPES]
FIRST_FOUND = settings(
    max_examples=2000, phases=[Phase.generate], database=None
)  # find() without shrinking


def _tag(cls: type[msgspec.Struct]) -> str:
    return str(cls.__struct_config__.tag)


def test_the_type_lists_are_the_wire_unions() -> None:
    assert list(CLIENT_MESSAGE_TYPES) == tagged_types(ClientMessage)
    assert list(SERVER_MESSAGE_TYPES) == tagged_types(ServerMessage)
    assert {_tag(cls) for cls in CLIENT_MESSAGE_TYPES} == CLIENT_TYPES
    client = {_tag(cls) for cls in CLIENT_MESSAGE_TYPES}
    server = {_tag(cls) for cls in SERVER_MESSAGE_TYPES}
    assert len(client) == len(CLIENT_MESSAGE_TYPES)
    assert len(server) == len(SERVER_MESSAGE_TYPES)
    # Two tags go both ways: a board sends the workflow_log it shows (issue 14), and
    # the spec's flow diagram has the client send auth_challenge with its credential.
    assert client & server == {"workflow_log", "auth_challenge"}


@pytest.mark.parametrize("cls", ALL_TYPES, ids=_tag)
def test_every_message_type_has_a_strategy_and_the_union_strategy_reaches_it(
    cls: type[msgspec.Struct],
) -> None:
    assert isinstance(find(messages_of(cls), lambda _: True, settings=FIRST_FOUND), cls)
    union = client_messages() if cls in CLIENT_MESSAGE_TYPES else server_messages()
    assert isinstance(find(union, lambda m: isinstance(m, cls), settings=FIRST_FOUND), cls)


CONSTRAINED = [
    Annotated[int, Meta(gt=-3, lt=40, multiple_of=7)],
    Annotated[int, Meta(ge=2**40)],
    Annotated[float, Meta(gt=0.0, le=1.0)],
    Annotated[str, Meta(min_length=40)],
    Annotated[str, Meta(pattern=r"^[a-f0-9]{8}$", max_length=8)],
    Annotated[list[Annotated[int, Meta(ge=0)]], Meta(min_length=5, max_length=6)],
    Annotated[dict[str, Any], Meta(min_length=1)],
    tuple[Literal["a", "b"], ...],
    ErrorCode | None,
    *DOMAIN_EVENTS,
]


@pytest.mark.parametrize("tp", CONSTRAINED, ids=repr)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_for_type_respects_every_constraint_msgspec_checks(tp: Any, data: st.DataObject) -> None:
    value = data.draw(for_type(tp))
    assert msgspec.json.decode(msgspec.json.encode(value), type=tp) == value


@pytest.mark.parametrize("cls", [ErrorData, *DOMAIN_EVENTS[:1], int])
def test_messages_of_refuses_what_is_not_a_wire_message(cls: type[Any]) -> None:
    with pytest.raises(TypeError, match="not a wire message type"):
        messages_of(cls)


@settings(max_examples=200, deadline=None)
@given(client_messages())
def test_client_messages_round_trip_through_the_codec(message: ClientMessage) -> None:
    assert decode_client(encode(message)) == message


@settings(max_examples=200, deadline=None)
@given(server_messages())
def test_server_messages_round_trip_through_the_codec(message: ServerMessage) -> None:
    assert decode_server(encode(message)) == message


@settings(max_examples=100, deadline=None)
@given(client_frames(), server_frames())
def test_frames_are_what_the_codec_encodes(client: bytes, server: bytes) -> None:
    assert encode(decode_client(client)) == client
    assert encode(decode_server(server)) == server


@settings(max_examples=100, deadline=None)
@given(json_values())
def test_json_values_are_json(value: Any) -> None:
    assert json_values() is JSON_VALUES
    assert json.loads(json.dumps(value)) == value


@pytest.fixture(scope="module")
def validators() -> dict[str, Any]:
    """direction -> a validator of that half of the schema `adwd schema` prints;
    a skip when no JSON Schema validator is installed (adwd does not depend on one)."""
    jsonschema = pytest.importorskip("jsonschema")
    doc = json.loads(protocol_schema())
    found = {}
    for direction in ("client", "server"):
        schema = {"$schema": doc["$schema"], "$defs": doc["$defs"], **doc["properties"][direction]}
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        found[direction] = cls(schema)
    return found


@settings(max_examples=100, deadline=None)
@given(frame=client_frames())
def test_client_messages_conform_to_the_json_schema(
    validators: dict[str, Any], frame: bytes
) -> None:
    validators["client"].validate(json.loads(frame))


@settings(max_examples=100, deadline=None)
@given(frame=server_frames())
def test_server_messages_conform_to_the_json_schema(
    validators: dict[str, Any], frame: bytes
) -> None:
    validators["server"].validate(json.loads(frame))


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_adwd_runs_without_hypothesis() -> None:
    """Every events module but testing, the service and the client library
    import nothing of hypothesis: it is an optional dependency."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import adwd.events\n"
        "for m in pkgutil.iter_modules(adwd.events.__path__):\n"
        "    if m.name != 'testing':\n"
        "        importlib.import_module('adwd.events.' + m.name)\n"
        "import adwd.client, adwd.service.cli, adwd.service.app\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] == 'hypothesis'))\n"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_without_hypothesis_the_import_error_says_what_to_install() -> None:
    code = (
        "import sys\n"
        "sys.modules['hypothesis'] = None  # as if it were not installed\n"
        "try:\n"
        "    import adwd.events.testing\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ImportError ")
    assert "pip install 'adwd[testing]'" in result.stdout
    assert "pip install 'adwd[test]'" in result.stdout
