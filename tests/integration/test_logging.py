"""``log_format = "json"``: the real ``adwd serve`` logs one JSON object per line."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import TIMEOUT, Client

# Lines adwd prints itself for people and scripts (`adwd: serving ...`, `adwd: stopped
# cleanly`, `adwd: error: ...`): not log records, so never JSON.
STATUS_PREFIX = "adwd: "


def test_every_log_line_is_json_and_a_run_is_logged_with_its_adw_id(
    tmp_path: Path,
    serve: Callable[[Path], tuple[subprocess.Popen[str], int]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    release = tmp_path / "release"
    release.touch()  # the run completes as soon as it starts
    config = tmp_path / "adwd.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\nport = 0\nlog_format = "json"\n'
        f'[workflows.adw_sleep]\nenv = {{ ADW_RELEASE_FILE = "{release}" }}\n'
    )
    # The fixture echoes the service's stderr to ours, which capsys keeps.
    proc, port = serve(config)
    client = Client(f"ws://127.0.0.1:{port}/ws/trigger")
    try:
        assert client.trigger("adw_sleep", adw_id="logjson1")["data"]["status"] == "accepted"
        assert client.wait_terminal("logjson1")["data"]["status"] == "completed"
    finally:
        client.close()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=TIMEOUT) == 0

    # The echo thread may still be copying the last lines: wait for the very last one.
    err = ""
    deadline = time.monotonic() + TIMEOUT
    while "adwd: stopped cleanly" not in err and time.monotonic() < deadline:
        time.sleep(0.02)
        err += capsys.readouterr().err
    lines = err.splitlines()
    assert f"{STATUS_PREFIX}stopped cleanly" in lines
    assert any(line.startswith(f"{STATUS_PREFIX}serving ws://") for line in lines)

    records = []
    for line in lines:
        if line.startswith(STATUS_PREFIX):
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"a log line that is not JSON: {line!r}")
        assert isinstance(record, dict)
        assert {"ts", "level", "logger", "message"} <= set(record), record
        records.append(record)
    assert records
    run = [r for r in records if r.get("adw_id") == "logjson1"]
    assert [r["logger"] for r in run] == ["adwd.actors.workflow"] * 2, run
    assert "started" in run[0]["message"]
    assert "completed" in run[1]["message"]
