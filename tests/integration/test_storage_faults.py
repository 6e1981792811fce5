"""Full disks, on a real (tiny) tmpfs: the event log's failure stops the whole
service fast and loudly; a run's own log failing ends that run only.

Mounting needs root (CI and the developers' machines run as root); where it
is not allowed the tests skip and say so.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from adwd.actors.catalogue import WorkflowSpec
from adwd.actors.processes import group_members
from adwd.events.store import EventStore, StoredEvent
from tests.integration.conftest import TIMEOUT, Client, Running

Serve = Callable[[Path], tuple[subprocess.Popen[str], int]]


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` for the duration."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(directory: Path) -> Path:
    """Take every free byte of the file system of ``directory``."""
    filler = directory / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as out:
        while True:
            out.write(b"\0" * 65536)
            out.flush()
    return filler


def _events(path: Path) -> list[StoredEvent]:
    store = EventStore(path, readonly=True)
    try:
        return list(store.read())
    finally:
        store.close()


def test_a_full_disk_under_the_event_log_stops_the_service_fast(
    tmp_path: Path, serve: Serve
) -> None:
    with tmpfs(tmp_path / "disk", "4m") as disk:
        config = tmp_path / "adwd.toml"
        config.write_text(
            f'data_dir = "{disk / "data"}"\nport = 0\nshutdown_grace_s = 1.0\n'
            "[workflows.adw_sleep]\n"
            f'env = {{ ADW_STUBBORN_CHILD = "{tmp_path / "helper.pid"}" }}\n'
        )
        proc, port = serve(config)
        client = Client(f"ws://127.0.0.1:{port}/ws/trigger")
        try:
            client.trigger("adw_sleep", adw_id="held0001")
            started = client.wait_for(lambda m: m.get("data", {}).get("status") == "started")
            leader = int(re.search(r"pid (\d+)", started["data"]["message"]).group(1))  # type: ignore[union-attr]
            client.wait_for(lambda m: m.get("data", {}).get("status") == "running")
            filler = _fill(disk)
            began = time.monotonic()
            for n in range(200):  # enough commits to need a new page
                data = {"workflow_type": "adw_plan_iso", "adw_id": f"fill{n:04d}"}
                client.send({"type": "trigger_workflow", "data": data})
            # Every error this client gets says the service is unavailable (never
            # "internal": nothing failed in its connection), the last one why.
            error = client.wait_for(lambda m: m["type"] == "error" and "stopping:" in
                                    m["data"]["message"])  # fmt: skip
            assert "the event log failed" in error["data"]["message"]
            codes = {m["data"]["code"] for m in client.seen if m["type"] == "error"}
            assert codes == {"unavailable"}
            with pytest.raises(ConnectionClosed) as closed:
                client.wait_for(lambda _m: False)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1011
            assert proc.wait(timeout=TIMEOUT) == 1
            assert time.monotonic() - began < 10  # within seconds, not a hang
        finally:
            client.close()
        assert group_members(leader) == []  # its workflows were stopped, helpers too
        before = _events(disk / "data/events.db")
        filler.unlink()  # a bigger disk: the same files with room to grow
        check = sqlite3.connect(disk / "data/events.db")
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        check.close()
        again, port = serve(config)
        try:
            watcher = Client(f"ws://127.0.0.1:{port}/ws/trigger")
            watcher.send({"type": "ping"})
            assert watcher.wait_for(lambda m: m["type"] == "pong")
            watcher.close()
            after = _events(disk / "data/events.db")
            assert after[: len(before)] == before  # every committed event intact
        finally:
            again.terminate()
            assert again.wait(timeout=TIMEOUT) == 0


def test_a_full_disk_under_a_runs_log_fails_that_run_only(
    tmp_path: Path, start_service: Callable[..., Running]
) -> None:
    data = tmp_path / "data"
    with tmpfs(data / "agents" / "chatty01", "64k"):
        server = start_service(
            data_dir=data,
            max_concurrent=1,
            workflows={
                "adw_sleep": WorkflowSpec(
                    env={"ADW_CHATTER_BYTES": "1000000", "ADW_RELEASE_FILE": str(tmp_path / "go")}
                )
            },
        )
        (tmp_path / "go").touch()
        client = server.client()
        client.trigger("adw_sleep", adw_id="chatty01")
        client.trigger("adw_plan_iso", adw_id="next0001")
        end = client.wait_terminal("chatty01")
        assert end["data"]["status"] == "failed"
        assert "could not be written" in end["data"]["message"]
        assert "No space left on device" in end["data"]["message"]
        assert client.wait_terminal("next0001")["data"]["status"] == "completed"
        port = server.service.port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=TIMEOUT) as r:
            assert r.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=TIMEOUT) as r:
            assert json.loads(r.read())["status"] == "healthy"
        server.service.stop()  # before the tmpfs goes
