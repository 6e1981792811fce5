"""Random bytes, random JSON and near-valid messages never crash the server,
never close the connection, and always get an ``error`` with a code."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from adwd.events.codec import decode_client
from adwd.events.errors import ErrorCode, ProtocolError
from adwd.events.testing import JSON_VALUES
from adwd.events.wire import TriggerWorkflow
from tests.integration.conftest import Client, Running, services

CODES = {code.value for code in ErrorCode}


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with services(Path(tmp_path_factory.mktemp("fuzz"))) as start:
        yield start()


@pytest.fixture(scope="module")
def fuzz_client(fuzz_server: Running) -> Client:
    return fuzz_server.client()


def _is_valid(frame: bytes | str, running: Running) -> bool:
    try:
        msg = decode_client(frame)
    except ProtocolError:
        return False
    return not (
        isinstance(msg, TriggerWorkflow)
        and msg.data.workflow_type not in running.service.config.catalogue
    )


def _replies_until_pong(client: Client, frame: bytes | str) -> list[dict[str, Any]]:
    """Send the frame then a ping; everything answered before the pong."""
    client.send(frame)
    client.send({"type": "ping"})
    replies = []
    while (reply := client.recv())["type"] != "pong":
        replies.append(reply)
    return replies


def _assert_error(replies: list[dict[str, Any]]) -> None:
    errors = [r for r in replies if r["type"] == "error"]
    assert errors, replies
    assert errors[0]["data"]["code"] in CODES
    assert errors[0]["data"]["message"]


SETTINGS = settings(
    max_examples=75, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(frame=st.binary(min_size=1, max_size=300))
def test_random_bytes(fuzz_server: Running, fuzz_client: Client, frame: bytes) -> None:
    assume(not _is_valid(frame, fuzz_server))
    _assert_error(_replies_until_pong(fuzz_client, frame))


@SETTINGS
@given(value=JSON_VALUES)
def test_random_json(fuzz_server: Running, fuzz_client: Client, value: Any) -> None:
    frame = json.dumps(value)
    assume(not _is_valid(frame, fuzz_server))
    _assert_error(_replies_until_pong(fuzz_client, frame))


VALID_TRIGGER = {
    "workflow_type": "adw_plan_iso",
    "adw_id": "fuzz0001",
    "issue_number": "1",
    "model_set": "base",
    "trigger_reason": "fuzz",
}


@st.composite
def near_valid(draw: st.DrawFn) -> dict[str, Any]:
    """A valid message with one thing broken: a field dropped, retyped or retagged."""
    kind = draw(st.sampled_from(["trigger_workflow", "cancel_workflow", "ping"]))
    data: dict[str, Any] = (
        dict(VALID_TRIGGER) if kind == "trigger_workflow" else {"adw_id": "fuzz0001"}
    )
    message: dict[str, Any] = {"type": kind, "data": data}
    how = draw(st.sampled_from(["drop", "retype", "retag", "bad_data"]))
    if how == "drop" and data:
        del data[draw(st.sampled_from(sorted(data)))]
    elif how == "retype" and data:
        data[draw(st.sampled_from(sorted(data)))] = draw(JSON_VALUES)
    elif how == "retag":
        message["type"] = draw(st.sampled_from([kind.upper(), kind + "x", "", 7, None]))
    else:
        message["data"] = draw(st.sampled_from([[], "x", 3, True]))
    return message


@SETTINGS
@given(message=near_valid())
def test_near_valid_messages(
    fuzz_server: Running, fuzz_client: Client, message: dict[str, Any]
) -> None:
    frame = json.dumps(message)
    assume(not _is_valid(frame, fuzz_server))
    replies = _replies_until_pong(fuzz_client, frame)
    _assert_error(replies)
    if message["type"] == "trigger_workflow":
        # A malformed trigger still gets its one trigger_response, after its event commits.
        answered = [r for r in replies if r["type"] == "trigger_response"]
        response = (
            answered[0]
            if answered
            else fuzz_client.wait_for(lambda m: m["type"] == "trigger_response")
        )
        assert response["data"]["status"] == "rejected"
        assert response["data"]["error"] in CODES


def test_connection_survived_all_of_it(fuzz_client: Client) -> None:
    fuzz_client.send({"type": "ping"})
    assert fuzz_client.wait_for(lambda m: m["type"] == "pong")


def _nest(depth: int, shape: str, leaf: str = "1") -> str:
    """A JSON text nested ``depth`` levels deep, arrays, objects or both in turn."""
    opens = closes = ""
    for level in range(depth):
        as_array = shape == "array" or (shape == "mixed" and level % 2 == 0)
        opens += "[" if as_array else '{"k":'
        closes = ("]" if as_array else "}") + closes
    return opens + leaf + closes


@SETTINGS
@given(
    depth=st.integers(30, 20_000),
    shape=st.sampled_from(["array", "object", "mixed"]),
    where=st.sampled_from(["data", "issue_json", "unknown_field", "top"]),
)
def test_deeply_nested_frames(
    fuzz_server: Running, fuzz_client: Client, depth: int, shape: str, where: str
) -> None:
    nested = _nest(depth, shape)
    frame = {
        "data": f'{{"type":"trigger_workflow","data":{nested}}}',
        "issue_json": '{"type":"trigger_workflow","data":{"workflow_type":"adw_plan_iso",'
        f'"issue_json":{nested}}}}}',
        "unknown_field": f'{{"type":"ping","data":{{"extra":{nested}}}}}',
        "top": nested,
    }[where]
    assume(not _is_valid(frame, fuzz_server))
    _assert_error(_replies_until_pong(fuzz_client, frame))


def test_a_nested_frame_on_every_connection_leaves_the_service_serving(
    fuzz_server: Running,
) -> None:
    """The frame that once killed the actor serving a quarter of all connections:
    sent on many connections at once, each gets an error and stays usable, and
    the service goes on accepting (50 new connections each get a pong)."""
    frame = '{"type":"trigger_workflow","data":' + "[" * 5000 + "]" * 5000 + "}"
    attackers = [fuzz_server.client() for _ in range(8)]
    bystander = fuzz_server.client()
    try:
        for attacker in attackers:
            attacker.send(frame)
        for attacker in attackers:
            _assert_error(_replies_until_pong(attacker, '{"type":"ping"}'))
        newcomers = [fuzz_server.client() for _ in range(50)]
        try:
            for newcomer in newcomers:
                newcomer.send({"type": "ping"})
            for newcomer in newcomers:
                assert newcomer.wait_for(lambda m: m["type"] == "pong")
        finally:
            for newcomer in newcomers:
                newcomer.close()
        bystander.send({"type": "ping"})
        assert bystander.wait_for(lambda m: m["type"] == "pong")
    finally:
        for client in [*attackers, bystander]:
            client.close()
