"""The one decode point: every frame ends in a message or a ProtocolError."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from adwd.events.codec import MAX_NESTING, decode_client, nesting_depth, peek
from adwd.events.errors import ErrorCode, ProtocolError
from adwd.events.testing import JSON_VALUES

DEEP_VALUES = st.recursive(
    st.none() | st.integers() | st.text(alphabet='[]{}"\\ab', max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=40,
)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(value=DEEP_VALUES)
def test_nesting_depth_counts_arrays_and_objects_but_not_brackets_in_strings(value: Any) -> None:
    text = json.dumps(value)
    assert nesting_depth(text) == nesting_depth(text.encode()) == _depth(value)


@settings(max_examples=200, deadline=None)
@given(
    depth=st.integers(0, 3 * MAX_NESTING),
    inner=JSON_VALUES,
    as_bytes=st.booleans(),
)
def test_a_frame_ends_in_a_message_or_a_protocol_error(
    depth: int, inner: Any, as_bytes: bool
) -> None:
    value: Any = inner
    for _ in range(depth):
        value = [value]
    text = json.dumps({"type": "ping", "data": {"x": value}})
    frame: bytes | str = text.encode() if as_bytes else text
    try:
        decode_client(frame)
    except ProtocolError as problem:
        assert problem.code in set(ErrorCode)
        assert _depth({"x": value}) + 2 > MAX_NESTING or problem.code != ErrorCode.VALIDATION_ERROR
    else:
        assert _depth({"type": "ping", "data": {"x": value}}) <= MAX_NESTING
    assert peek(frame).type in ("ping", None)


def test_thousands_of_levels_are_refused_with_the_limit_named() -> None:
    frame = '{"type":"trigger_workflow","data":' + "[" * 5000 + "]" * 5000 + "}"
    try:
        decode_client(frame)
    except ProtocolError as problem:
        assert problem.code == ErrorCode.VALIDATION_ERROR
        assert f"at most {MAX_NESTING} levels" in problem.message
        assert problem.details == {"field": "", "reason": "nesting", "limit": MAX_NESTING}
    else:
        raise AssertionError("a 5,000-level frame was accepted")
    assert peek(frame).type is None


def test_peek_never_raises() -> None:
    for frame in ["", "{", "[" * 100_000, b"\xff\xfe", '{"type":' + "[" * 3000]:
        assert peek(frame).request_id is None
