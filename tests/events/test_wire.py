"""Every wire message type round-trips; the spec's validation rules hold."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adwd.events.codec import decode_client, decode_server, encode
from adwd.events.errors import ErrorCode, ProtocolError
from adwd.events.schema import protocol_schema
from adwd.events.testing import for_type, tagged_types
from adwd.events.wire import (
    ClientMessage,
    Error,
    ErrorData,
    ServerMessage,
    StatusUpdate,
    TriggerResponse,
    TriggerWorkflow,
)

CLIENT = tagged_types(ClientMessage)
SERVER = tagged_types(ServerMessage)


def test_every_spec_message_type_is_defined() -> None:
    tags = {cls.__struct_config__.tag for cls in CLIENT + SERVER}
    spec_types = {
        "ping", "pong", "trigger_workflow", "trigger_response", "status_update", "error",
        "connection_quality", "health_status", "queue_status", "workflow_metrics",
        "cancel_workflow", "error_report", "recovery_instructions", "auth_challenge",
        "auth_response", "performance_metrics", "alert",
    }  # fmt: skip
    assert spec_types <= tags


@pytest.mark.parametrize("cls", CLIENT, ids=lambda c: c.__struct_config__.tag)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_client_messages_round_trip(cls: type[msgspec.Struct], data: st.DataObject) -> None:
    message = data.draw(for_type(cls))
    assert decode_client(encode(message)) == message


@pytest.mark.parametrize("cls", SERVER, ids=lambda c: c.__struct_config__.tag)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_server_messages_round_trip(cls: type[msgspec.Struct], data: st.DataObject) -> None:
    message = data.draw(for_type(cls))
    assert decode_server(encode(message)) == message


def _trigger(**data: object) -> bytes:
    return msgspec.json.encode({"type": "trigger_workflow", "data": data})


def _problem(frame: bytes | str) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode_client(frame)
    return info.value


def test_trigger_defaults_and_integer_issue_number() -> None:
    msg = decode_client(_trigger(workflow_type="adw_plan_iso", issue_number=42))
    assert isinstance(msg, TriggerWorkflow)
    assert msg.data.issue_number == "42"
    assert msg.data.model_set == "base"
    assert msg.data.adw_id is None


def test_trigger_accepts_kanban_extra_fields() -> None:
    msg = decode_client(
        _trigger(
            workflow_type="adw_build_iso",
            adw_id="abc-123_X",
            issue_number="7",
            model_set="heavy",
            trigger_reason="card moved",
            issue_type="feature",
            issue_json={"title": "t", "labels": ["a"]},
            stages=["plan", "build"],
            config={"auto": True},
            something_new=1,
        )
    )
    assert isinstance(msg, TriggerWorkflow)
    assert msg.data.stages == ["plan", "build"]
    assert msg.data.issue_json == {"title": "t", "labels": ["a"]}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "data.workflow_type"),
        ({"workflow_type": 5}, "data.workflow_type"),
        ({"workflow_type": "adw_plan_iso", "model_set": "huge"}, "data.model_set"),
        ({"workflow_type": "adw_plan_iso", "trigger_reason": "x" * 501}, "data.trigger_reason"),
        ({"workflow_type": "adw_plan_iso", "adw_id": "../etc"}, "data.adw_id"),
        ({"workflow_type": "adw_plan_iso", "adw_id": "a" * 65}, "data.adw_id"),
        ({"workflow_type": "adw_plan_iso", "issue_number": -1}, "data.issue_number"),
    ],
)
def test_trigger_validation_names_the_field(data: dict[str, object], field: str) -> None:
    problem = _problem(_trigger(**data))
    assert problem.code == ErrorCode.VALIDATION_ERROR
    assert problem.details is not None
    assert problem.details["field"] == field


def test_trigger_reason_of_500_characters_is_accepted() -> None:
    decode_client(_trigger(workflow_type="adw_plan_iso", trigger_reason="x" * 500))


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"not json", ErrorCode.INVALID_JSON),
        (b"\xff\xfe", ErrorCode.INVALID_JSON),
        (b'{"type": "teleport"}', ErrorCode.UNKNOWN_TYPE),
        (b'{"data": {}}', ErrorCode.VALIDATION_ERROR),
        (b"[1, 2]", ErrorCode.VALIDATION_ERROR),
        (b'{"type": 3}', ErrorCode.VALIDATION_ERROR),
    ],
)
def test_bad_frames_get_stable_codes(frame: bytes, code: ErrorCode) -> None:
    assert _problem(frame).code == code


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_decoding_arbitrary_input_fails_only_with_protocol_error(frame: bytes | str) -> None:
    try:
        decode_client(frame)
    except ProtocolError as problem:
        assert problem.code in set(ErrorCode)
        assert problem.message


def test_the_schema_lists_every_error_code_where_codes_are_sent() -> None:
    schema = json.loads(protocol_schema())
    defs = schema["$defs"]
    assert sorted(defs["ErrorCode"]["enum"]) == sorted(code.value for code in ErrorCode)
    code_ref = {"$ref": "#/$defs/ErrorCode"}
    assert code_ref in defs["ErrorData"]["properties"]["code"]["anyOf"]
    assert code_ref in defs["TriggerResponseData"]["properties"]["error"]["anyOf"]


def test_typed_error_codes_keep_the_strings_existing_clients_read() -> None:
    frame = encode(Error(ErrorData(message="m", code=ErrorCode.NOT_FOUND)))
    assert json.loads(frame) == {
        "type": "error",
        "data": {"message": "m", "code": "not_found", "details": None},
    }
    decoded = decode_server(frame)
    assert isinstance(decoded, Error)
    assert decoded.data.code is ErrorCode.NOT_FOUND


def test_a_frame_of_a_server_older_than_the_typed_fields_still_decodes() -> None:
    """New fields are additive: frames without them decode to their defaults."""
    response = decode_server(
        b'{"type":"trigger_response","data":{"status":"accepted","adw_id":"a",'
        b'"workflow_name":"w","logs_path":"/l","error":null,"message":"queued",'
        b'"details":null},"seq":2}'
    )
    assert isinstance(response, TriggerResponse)
    assert response.data.outcome is None
    update = decode_server(
        b'{"type":"status_update","data":{"adw_id":"a","status":"failed","message":"m",'
        b'"progress_percent":0,"current_step":"Cancelled","workflow_name":"w"},"seq":3}'
    )
    assert isinstance(update, StatusUpdate)
    assert update.data.cancelled is False
