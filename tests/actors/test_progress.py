"""The ``ADW-PROGRESS {json}`` line parser: valid lines parse, anything else is a log line."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adwd.actors.messages import Progress
from adwd.actors.progress import PREFIX, parse_progress_line


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'ADW-PROGRESS {"progress_percent": 40, "current_step": "build", "message": "m"}',
         Progress(40, "build", "m")),
        (b'ADW-PROGRESS {"progress_percent": 0}\n', Progress(0, None, None)),
        (b'ADW-PROGRESS {"progress_percent": 100}\r\n', Progress(100, None, None)),
        (b'ADW-PROGRESS {"current_step": "plan"}', Progress(None, "plan", None)),
        (b'ADW-PROGRESS {"message": "hi", "extra": [1, 2]}', Progress(None, None, "hi")),
        (b"ADW-PROGRESS {}", Progress(None, None, None)),
        ('ADW-PROGRESS {"message": "caf\u00e9"}'.encode(), Progress(None, None, "caf\u00e9")),
    ],
)  # fmt: skip
def test_valid_progress_lines(line: bytes, expected: Progress) -> None:
    assert parse_progress_line(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"building...",
        b'adw-progress {"progress_percent": 1}',
        b' ADW-PROGRESS {"progress_percent": 1}',
        b'ADW-PROGRESS{"progress_percent": 1}',
        b"ADW-PROGRESS ",
        b"ADW-PROGRESS not json",
        b'ADW-PROGRESS {"progress_percent": 1',
        b"ADW-PROGRESS [1, 2]",
        b"ADW-PROGRESS 50",
        b'ADW-PROGRESS {"progress_percent": 101}',
        b'ADW-PROGRESS {"progress_percent": -1}',
        b'ADW-PROGRESS {"progress_percent": "50"}',
        b'ADW-PROGRESS {"progress_percent": 50.5}',
        b'ADW-PROGRESS {"progress_percent": true}',
        b'ADW-PROGRESS {"current_step": 3}',
        b'ADW-PROGRESS {"current_step": "' + b"s" * 201 + b'"}',
        b'ADW-PROGRESS {"message": "' + b"m" * 2001 + b'"}',
        b"ADW-PROGRESS \xff\xfe",
        b'ADW-PROGRESS {"progress_percent": 1} trailing',
    ],
)
def test_malformed_progress_lines_are_ordinary_log_lines(line: bytes) -> None:
    assert parse_progress_line(line) is None


def test_limits_are_inclusive() -> None:
    line = msgspec.json.encode({"current_step": "s" * 200, "message": "m" * 2000})
    assert parse_progress_line(PREFIX + line) == Progress(None, "s" * 200, "m" * 2000)


progress_fields = st.fixed_dictionaries(
    {},
    optional={
        "progress_percent": st.integers(0, 100),
        "current_step": st.text(max_size=200),
        "message": st.text(max_size=2000),
    },
)


@given(fields=progress_fields)
def test_any_valid_progress_round_trips(fields: dict[str, object]) -> None:
    line = PREFIX + msgspec.json.encode(fields) + b"\n"
    assert parse_progress_line(line) == Progress(
        fields.get("progress_percent"),  # type: ignore[arg-type]
        fields.get("current_step"),  # type: ignore[arg-type]
        fields.get("message"),  # type: ignore[arg-type]
    )


@given(rest=st.text(max_size=200).map(str.encode))
def test_arbitrary_text_after_the_prefix_never_raises(rest: bytes) -> None:
    result = parse_progress_line(PREFIX + rest)
    assert result is None or isinstance(result, Progress)


def test_invalid_utf8_inside_a_string_is_an_ordinary_log_line() -> None:
    # The stdout pump in actors/workflow.py does not catch it: the run's output stops being read.
    assert parse_progress_line(b'ADW-PROGRESS {"message": "\xff\xfe"}') is None


@given(line=st.binary(max_size=100).filter(lambda b: not b.startswith(PREFIX)))
def test_lines_without_the_prefix_are_not_progress(line: bytes) -> None:
    assert parse_progress_line(line) is None
