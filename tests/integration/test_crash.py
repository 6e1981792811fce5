"""Kill -9 the service mid-run and start it again: nothing committed is lost,
queued runs still run, in-flight runs fail as interrupted with an error report,
and the children the dead service left behind are found and stopped."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from adwd.actors.catalogue import WorkflowSpec
from adwd.actors.processes import group_members
from adwd.events.store import EventStore
from tests.integration.conftest import TIMEOUT, Client, Running


def test_sigkill_then_restart(
    tmp_path: Path,
    start_service: Callable[..., Running],
    serve: Callable[[Path], tuple[subprocess.Popen[str], int]],
) -> None:
    release = tmp_path / "release"
    config = tmp_path / "adwd.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\nport = 0\nmax_concurrent = 1\n'
        f'[workflows.adw_sleep]\nenv = {{ ADW_RELEASE_FILE = "{release}" }}\n'
    )
    proc, port = serve(config)
    client = Client(f"ws://127.0.0.1:{port}/ws/trigger")
    client.trigger("adw_sleep", adw_id="inflight")
    client.trigger("adw_sleep", adw_id="waiting")
    started = client.wait_for(lambda m: m["data"].get("status") == "started")
    child = int(re.search(r"pid (\d+)", started["data"]["message"]).group(1))  # type: ignore[union-attr]
    client.wait_for(lambda m: m["data"].get("status") == "running")
    proc.kill()  # SIGKILL: no shutdown, no flush, no goodbye
    assert proc.wait(timeout=TIMEOUT) == -signal.SIGKILL
    os.killpg(child, 0)  # the child outlived the service (no error: it is alive)

    store = EventStore(tmp_path / "data/events.db", readonly=True)
    before = list(store.read())
    store.close()
    assert [e.type for e in before].count("run_queued") == 2

    restarted = start_service(
        data_dir=tmp_path / "data",
        max_concurrent=1,
        workflows={"adw_sleep": WorkflowSpec(env={"ADW_RELEASE_FILE": str(release)})},
    )
    # Found and stopped at start-up: no live member of its group is left (a
    # zombie waiting for this sandbox's init to reap it counts as gone).
    assert group_members(child) == []
    after = restarted.events()
    assert after[: len(before)] == before  # every committed event is still there
    new = [e for e in after[len(before) :] if e.stream == "workflow:inflight"]
    types = [e.type for e in new]
    assert types[:3] == ["orphan_stopped", "run_failed", "error_reported"]
    assert "interrupted" in new[1].event.reason  # type: ignore[union-attr]
    assert new[2].event.recovery_options == ["retry", "retry_heavy", "cancel"]  # type: ignore[union-attr]

    watcher = restarted.client("/ws/trigger?since=0")
    report = watcher.wait_for(lambda m: m["type"] == "error_report")
    assert report["data"]["category"] == "system"
    assert report["data"]["error_class"] == "system.interrupted"
    release.touch()
    assert watcher.wait_terminal("waiting")["data"]["status"] == "completed"  # queued: still ran
    statuses = [
        m["data"]["status"] for m in watcher.seen
        if m["type"] == "status_update" and m["data"]["adw_id"] == "inflight"
    ]  # fmt: skip
    assert statuses[-1] == "failed"
