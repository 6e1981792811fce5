"""adwd trigger / status / cancel / watch against the real service, as real processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adwd.actors.catalogue import WorkflowSpec
from tests.integration.conftest import Running, services


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Running]:
    release = tmp_path / "release"
    with services(tmp_path) as start:
        running = start(
            workflows={"adw_sleep": WorkflowSpec(env={"ADW_RELEASE_FILE": str(release)})}
        )
        running.release = release  # type: ignore[attr-defined]
        yield running


def _adwd(
    server: Running, *args: str, wait: bool = True
) -> subprocess.CompletedProcess[str] | subprocess.Popen[str]:
    argv = [
        sys.executable,
        "-m",
        "adwd",
        *args,
        "--url",
        f"http://127.0.0.1:{server.service.port}",
    ]
    if wait:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_trigger_follow_shows_progress_and_exits_with_the_outcome(server: Running) -> None:
    done = _adwd(server, "trigger", "adw_plan_iso", "--issue", "5", "--follow")
    assert done.returncode == 0, done.stderr
    assert "accepted" in done.stdout
    assert "100%" in done.stdout
    assert "completed: adw_plan_iso completed" in done.stdout
    failed = _adwd(server, "trigger", "adw_plan_iso", "--reason", "#fail", "--follow")
    assert failed.returncode == 1
    assert "failing on request" in failed.stdout  # the run's own log line
    rejected = _adwd(server, "trigger", "adw_nothing")
    assert rejected.returncode == 2
    assert "rejected" in rejected.stdout


def test_trigger_follow_json_lines(server: Running) -> None:
    done = _adwd(server, "trigger", "adw_plan_iso", "--adw-id", "cli-json", "--follow", "--json")
    assert done.returncode == 0, done.stderr
    messages = [json.loads(line) for line in done.stdout.splitlines()]
    assert messages[0]["status"] == "accepted"
    statuses = [m["data"]["status"] for m in messages[1:] if m.get("type") == "status_update"]
    assert statuses[0] == "started"
    assert statuses[-1] == "completed"


def test_cancel_and_a_followed_run_that_gets_cancelled(server: Running) -> None:
    follower = _adwd(
        server, "trigger", "adw_sleep", "--adw-id", "cli-cancel", "--follow", wait=False
    )
    assert isinstance(follower, subprocess.Popen)
    watcher = server.client()
    watcher.wait_for(
        lambda m: m["data"].get("adw_id") == "cli-cancel" and m["data"].get("status") == "running"
    )
    cancelled = _adwd(server, "cancel", "cli-cancel", "--reason", "not today")
    assert cancelled.returncode == 0
    assert "cancelling" in cancelled.stdout
    out, _ = follower.communicate(timeout=60)
    assert follower.returncode == 3
    assert "not today" in out
    missing = _adwd(server, "cancel", "nobody")
    assert missing.returncode == 1
    assert "not_found" in missing.stdout


def test_status_json_and_watch_once(server: Running) -> None:
    client = server.client()
    client.trigger("adw_plan_iso", adw_id="cli-status")
    done = client.wait_terminal("cli-status")
    deadline = time.monotonic() + 30
    while True:  # the read API follows the stream: wait until it has folded the run's end
        status = _adwd(server, "status", "--json")
        assert status.returncode == 0, status.stderr
        doc = json.loads(status.stdout)
        if doc["seq"] >= done["seq"] or time.monotonic() > deadline:
            break
    assert doc["health"]["status"] == "healthy"
    assert [r["adw_id"] for r in doc["runs"]] == ["cli-status"]
    assert doc["runs"][0]["stage"] == "build"
    table = _adwd(server, "status")
    assert "cli-status" in table.stdout
    watch = _adwd(server, "watch", "--once")
    assert watch.returncode == 0
    assert "health: healthy" in watch.stdout


def test_an_unreachable_service_is_a_clear_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "adwd", "status", "--url", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "cannot reach adwd" in done.stderr
