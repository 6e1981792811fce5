"""Log formats: plain lines as before, or one JSON object per record (service/logs.py)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adwd.events.errors import ConfigError
from adwd.service.cli import build_parser
from adwd.service.config import load_config
from adwd.service.logs import PLAIN_FORMAT, JsonFormatter, configure_logging, make_formatter


@pytest.fixture
def json_log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own whose records go, JSON-formatted, to a buffer only."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("adwd.test_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, buffer
    logger.removeHandler(handler)
    logger.propagate = True


def _records(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_a_record_is_a_json_object_with_time_level_logger_and_message(
    json_log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = json_log
    before = datetime.now(UTC)
    logger.warning("disk %s is %d%% full", "/var", 93)
    (record,) = _records(buffer)
    assert set(record) == {"ts", "level", "logger", "message"}
    assert (record["level"], record["logger"]) == ("WARNING", "adwd.test_logs")
    assert record["message"] == "disk /var is 93% full"
    ts = datetime.fromisoformat(record["ts"])
    assert ts.utcoffset() == timedelta(0)
    assert record["ts"].endswith("Z")
    assert before - timedelta(seconds=1) <= ts <= datetime.now(UTC) + timedelta(seconds=1)


def test_adw_id_and_connection_are_fields_when_a_record_carries_them(
    json_log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = json_log
    logger.info("run started", extra={"adw_id": "a1b2c3d4"})
    logger.info("slow client", extra={"connection": "9f8e7d6c5b4a"})
    logger.info("both", extra={"adw_id": "a1b2c3d4", "connection": "9f8e7d6c5b4a"})
    run, conn, both = _records(buffer)
    assert run["adw_id"] == "a1b2c3d4"
    assert "connection" not in run
    assert conn["connection"] == "9f8e7d6c5b4a"
    assert "adw_id" not in conn
    assert (both["adw_id"], both["connection"]) == ("a1b2c3d4", "9f8e7d6c5b4a")


def test_an_exception_comes_with_its_traceback(
    json_log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = json_log
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("it failed", extra={"adw_id": "x1"})
    (record,) = _records(buffer)
    assert record["message"] == "it failed"
    assert record["exc"].startswith("Traceback (most recent call last):")
    assert record["exc"].rstrip().endswith("ValueError: boom")
    assert record["adw_id"] == "x1"


def test_one_line_per_record_even_with_newlines(
    json_log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = json_log
    logger.error("first line\nsecond line\r\nthird")
    try:
        raise RuntimeError("multi\nline")
    except RuntimeError:
        logger.exception("with a traceback")
    logger.info("after")
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 3
    first, second, third = (json.loads(line) for line in lines)
    assert first["message"] == "first line\nsecond line\r\nthird"
    assert "RuntimeError: multi\nline" in second["exc"]
    assert third["message"] == "after"


def test_an_undecodable_file_name_does_not_lose_the_record(
    json_log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = json_log
    logger.warning("cannot read %s", "/data/caf\udce9")  # os.fsdecode of b"caf\xe9"
    (record,) = _records(buffer)
    assert record["message"] == "cannot read /data/caf\\udce9"


def test_plain_is_the_format_of_before() -> None:
    assert PLAIN_FORMAT == "%(asctime)s %(levelname)s %(name)s: %(message)s"
    formatter = make_formatter("plain")
    assert not isinstance(formatter, JsonFormatter)
    record = logging.makeLogRecord({"name": "adwd.x", "levelname": "INFO", "msg": "hi"})
    assert formatter.format(record).endswith(" INFO adwd.x: hi")


@contextlib.contextmanager
def _bare_root() -> Iterator[logging.Logger]:
    """The root logger without handlers (as in a fresh process); restored afterwards.

    A context, not a fixture: pytest adds its capture handlers to the root
    logger anew for the test's call phase, after fixtures are set up.
    """
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    root.handlers.clear()
    try:
        yield root
    finally:
        root.handlers[:] = saved
        root.setLevel(level)


def test_configure_logging_installs_one_handler_and_switches_its_format() -> None:
    buffer = io.StringIO()
    with _bare_root() as root:
        configure_logging("plain", stream=buffer)
        logging.getLogger("adwd.test").info("plain line")
        configure_logging("json")  # what `adwd serve` does once its config is loaded
        logging.getLogger("adwd.test").info("json line", extra={"adw_id": "z9"})
        assert len(root.handlers) == 1
        assert root.level == logging.INFO
    plain, as_json = buffer.getvalue().splitlines()
    assert plain.endswith(" INFO adwd.test: plain line")
    assert json.loads(as_json)["adw_id"] == "z9"


def test_configure_logging_leaves_someone_elses_handlers_alone() -> None:
    theirs = logging.NullHandler()
    with _bare_root() as root:
        root.addHandler(theirs)
        configure_logging("json")
        assert root.handlers == [theirs]


def test_log_format_setting_env_var_and_flag() -> None:
    assert load_config(env={}).log_format == "plain"
    assert load_config(env={"ADWD_LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(ConfigError, match="log_format"):
        load_config(env={"ADWD_LOG_FORMAT": "xml"})
    args = build_parser().parse_args(["serve", "--log-format", "json"])
    assert args.log_format == "json"
    assert build_parser().parse_args(["serve"]).log_format is None  # the config decides
