"""``adwd backup``: a consistent copy of the log taken while the real service writes
to it, the restore steps of docs/operations.md, and the command's refusals."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adwd.events.domain import ServiceStopped
from adwd.events.store import EventStore, NewEvent
from adwd.projections.views import ViewStore
from adwd.service.backup import BackupError, backup_log
from adwd.service.cli import main
from tests.integration.conftest import TIMEOUT, Client, Running

BURST = 2500  # progress lines of ~2 KB before the backup: > 4 MiB, several 1024-page steps

# A workflow that writes a burst of big progress events, says so, then keeps
# streaming small ones until its release file appears.
STREAMER = f"""
import json, os, time
def progress(**fields):
    print("ADW-PROGRESS " + json.dumps(fields), flush=True)
for i in range({BURST}):
    progress(progress_percent=i * 50 // {BURST}, message="x" * 1900)
progress(progress_percent=50, current_step="streaming")
tick = 0
while not os.path.exists(os.environ["ADW_RELEASE_FILE"]):
    tick += 1
    progress(progress_percent=50 + tick % 50, current_step="streaming", message=f"tick {{tick}}")
    time.sleep(0.002)  # the workflow's pace, not a wait of the test
"""


def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)


def _query(path: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    conn = _ro(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def test_backup_while_a_run_streams_holds_every_committed_event(
    tmp_path: Path,
    serve: Callable[[Path], tuple[subprocess.Popen[str], int]],
    start_service: Callable[..., Running],
) -> None:
    data, backups, release = tmp_path / "data", tmp_path / "backups", tmp_path / "release"
    backups.mkdir()
    config = _streamer_config(tmp_path, data, release)
    proc, port = serve(config)
    client = Client(f"ws://127.0.0.1:{port}/ws/trigger")
    try:
        assert client.trigger("adw_stream", adw_id="stream1")["data"]["status"] == "accepted"
        client.wait_for(
            lambda m: m["type"] == "status_update" and m["data"]["current_step"] == "streaming",
            timeout=60,
        )
        live = data / "events.db"
        before = int(_query(live, "SELECT max(seq) FROM events")[0][0])  # type: ignore[arg-type]

        done = subprocess.run(
            [sys.executable, "-m", "adwd", "backup", str(backups), "--config", str(config),
             "--json"],
            capture_output=True, text=True, timeout=TIMEOUT, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)

        # The service went on streaming: events committed after the copy reach clients.
        client.wait_for(lambda m: (m.get("seq") or 0) > report["last_seq"])
        copy = Path(report["path"])
        assert [p.name for p in backups.iterdir()] == [copy.name]  # no temporary left
        assert copy.name.startswith("events-")
        assert copy.stat().st_size == report["bytes"] > 1024 * 4096  # copied in several steps
        assert report["integrity"] == "ok"
        assert _query(copy, "PRAGMA integrity_check") == [("ok",)]

        # Every event committed before the backup started, identical; and the copy
        # is a prefix of the log: one snapshot, nothing half-copied or reordered.
        assert report["last_seq"] >= before
        copied = _query(copy, "SELECT * FROM events ORDER BY seq")
        assert [row[0] for row in copied] == list(range(1, report["last_seq"] + 1))
        assert len(copied) == report["events"]
        source = _query(live, "SELECT * FROM events WHERE seq <= ? ORDER BY seq", before)
        assert copied[:before] == source
        assert copied == _query(
            live, "SELECT * FROM events WHERE seq <= ? ORDER BY seq", report["last_seq"]
        )
        assert _query(live, "SELECT value FROM meta WHERE key = 'epoch'") != [(report["epoch"],)]
        release.touch()
        assert client.wait_terminal("stream1", timeout=60)["data"]["status"] == "completed"
    finally:
        client.close()
    proc.terminate()
    assert proc.wait(timeout=TIMEOUT) == 0

    _restore_and_restart(copy, data, report, start_service)


def _streamer_config(tmp_path: Path, data: Path, release: Path) -> Path:
    """A config file with the adw_stream workflow, which runs STREAMER."""
    script = tmp_path / "streamer.py"
    script.write_text(STREAMER)
    config = tmp_path / "adwd.toml"
    config.write_text(
        f'data_dir = "{data}"\nport = 0\n'
        "[workflows.adw_stream]\n"
        f'argv = ["{{python}}", "{script}"]\n'
        f'env = {{ ADW_RELEASE_FILE = "{release}" }}\n'
    )
    return config


def _restore_and_restart(
    copy: Path, data: Path, report: dict[str, Any], start_service: Callable[..., Running]
) -> None:
    """Restore as docs/operations.md says: with the service stopped, the log and its
    -wal/-shm moved aside, the copy put in place, views.db left as it is."""
    for name in ("events.db", "events.db-wal", "events.db-shm"):
        if (data / name).exists():
            (data / name).rename(data.parent / f"old-{name}")
    (data / "events.db").write_bytes(copy.read_bytes())
    restarted = start_service(data_dir=data)
    restarted.service.stop()
    log = EventStore(data / "events.db", readonly=True)
    views = ViewStore(data / "views.db", readonly=True)
    try:
        assert log.epoch == report["epoch"]
        after = list(log.read(report["last_seq"]))
        assert after[0].type == "service_started"
        # The run was running at the backup's moment: the restored log ends it.
        assert any(e.type == "run_failed" and e.stream == "workflow:stream1" for e in after)
        assert views.checkpoint() == (log.last_seq(), report["epoch"])  # rebuilt from the copy
    finally:
        log.close()
        views.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory whose log holds three events."""
    store = EventStore(tmp_path / "data" / "events.db")
    store.append([NewEvent("system", ServiceStopped(reason=str(i))) for i in range(3)])
    store.close()
    return tmp_path / "data"


def test_backup_to_a_file_refuses_to_replace_it_without_force(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "copy.db"
    assert main(["backup", str(dest), "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert f"to {dest}" in out
    assert "3 (last seq 3)" in out
    assert "integrity  ok" in out
    first = dest.read_bytes()

    assert main(["backup", str(dest), "--data-dir", str(data_dir)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert dest.read_bytes() == first
    assert main(["backup", str(dest), "--data-dir", str(data_dir), "--force"]) == 0
    assert _query(dest, "SELECT count(*) FROM events") == [(3,)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.db", "data"]


def test_backup_into_a_directory_names_the_copy_by_time(data_dir: Path, tmp_path: Path) -> None:
    report = backup_log(data_dir, tmp_path)
    path = Path(report.path)
    assert path.parent == tmp_path
    assert path.name.startswith("events-")
    assert path.name.endswith("Z.db")
    assert (report.events, report.last_seq, report.integrity) == (3, 3, "ok")


@pytest.mark.parametrize(
    ("dest", "message"),
    [
        ("missing/", "Directory .*missing does not exist"),
        ("missing/copy.db", "Directory .*missing does not exist"),
        ("data/events.db", "is the event log itself"),
    ],
)
def test_backup_refuses_a_destination_it_cannot_use(
    data_dir: Path, tmp_path: Path, dest: str, message: str
) -> None:
    with pytest.raises(BackupError, match=message):
        backup_log(data_dir, f"{tmp_path}/{dest}", force=True)  # the "/" kept
    assert not (tmp_path / "missing").exists()


def test_backup_without_a_log_names_it_and_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["backup", str(tmp_path), "--data-dir", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "nowhere" / "events.db") in err
    assert "--data-dir" in err
    assert list(tmp_path.iterdir()) == []
