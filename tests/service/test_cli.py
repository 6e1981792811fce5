"""The debugging commands against a log written by the real service."""

from __future__ import annotations

import itertools
import json
import queue
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adwd.actors.catalogue import WorkflowSpec
from adwd.service.cli import main
from adwd.service.debug import Bound, QueryError, parse_bound, parse_time
from tests.integration.conftest import TIMEOUT, services

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Log:
    """A stopped service's data directory and its events, as ``--json`` printed them."""

    data_dir: Path
    events: list[dict[str, Any]]

    def seq_of(self, adw_id: str, kind: str) -> int:
        return next(
            e["seq"]
            for e in self.events
            if e["type"] == kind and e["event"].get("adw_id") == adw_id
        )


def _running_update(adw_id: str) -> Any:
    def matches(m: dict[str, Any]) -> bool:
        data = m["data"]
        return m["type"] == "status_update" and (data["adw_id"], data["status"]) == (
            adw_id, "running",
        )  # fmt: skip

    return matches


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Log:
    """One run completed, one failed, one queued behind another, one adw_id run three times,
    and a rejected trigger; then the service stops."""
    base = tmp_path_factory.mktemp("cli")
    release = base / "release"
    sleep = WorkflowSpec(env={"ADW_RELEASE_FILE": str(release)}, timeout_s=60)
    with services(base) as start:
        # adw_build_iso without its plan dependency: this history has a lone failed build.
        alone = WorkflowSpec(stages=("build",))
        server = start(max_concurrent=1, workflows={"adw_sleep": sleep, "adw_build_iso": alone})
        client = server.client()
        client.trigger("adw_plan_iso", adw_id="ok1", issue_number="7")
        client.wait_terminal("ok1")
        client.trigger("adw_build_iso", adw_id="bad1", trigger_reason="please #fail")
        client.wait_terminal("bad1")
        client.trigger("adw_sleep", adw_id="hold")
        client.wait_for(_running_update("hold"))
        client.trigger("adw_plan_iso", adw_id="wait1")  # queued behind hold
        release.touch()
        client.wait_terminal("hold")
        client.wait_terminal("wait1")
        for workflow_type in ("adw_plan_iso", "adw_test_iso", "adw_plan_iso"):
            client.trigger(workflow_type, adw_id="multi")
            client.wait_terminal("multi")
        client.send({"type": "trigger_workflow", "data": {"workflow_type": "adw_fly_iso"}})
        assert client.wait_for(lambda m: m["type"] == "trigger_response")["data"]["status"] == (
            "rejected"
        )
        data_dir = server.data_dir
    return Log(data_dir, [])


@pytest.fixture(autouse=True)
def _plain_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("COLUMNS", "FORCE_COLOR", "NO_COLOR", "ADWD_DATA_DIR", "ADWD_CONFIG"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def events(log: Log, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """Every event of the log, read with ``adwd events --json``."""
    capsys.readouterr()
    if not log.events:
        assert main(["events", "--data-dir", str(log.data_dir), "--json"]) == 0
        log.events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return log.events


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], log: Log, *argv: str) -> list[dict[str, Any]]:
    code, out, err = run(capsys, *argv, "--data-dir", str(log.data_dir), "--json")
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


# -- events ------------------------------------------------------------------------


def test_events_json_has_every_field_and_the_payload(events: list[dict[str, Any]]) -> None:
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    for e in events:
        assert set(e) == {
            "seq", "ts", "stream", "type", "version", "principal", "correlation_id", "event",
        }  # fmt: skip
        assert e["event"]["type"] == e["type"]
    queued = next(e for e in events if e["type"] == "run_queued")
    assert queued["stream"] == "workflow:ok1"
    assert queued["event"]["issue_number"] == "7"
    assert queued["event"]["logs_path"].endswith("agents/ok1/adw_plan_iso/execution.log")
    assert (events[0]["type"], events[-1]["type"]) == ("service_started", "service_stopped")


def test_events_by_adw_id_and_type(
    capsys: pytest.CaptureFixture[str], log: Log, events: list[dict[str, Any]]
) -> None:
    ok1 = run_json(capsys, log, "events", "--adw-id", "ok1")
    assert ok1 == [e for e in events if e["stream"] == "workflow:ok1"]
    assert [e["type"] for e in ok1][:2] == ["run_queued", "run_started"]
    assert ok1[-1]["type"] == "run_completed"
    ended = run_json(capsys, log, "events", "--type", "run_completed", "--type", "run_failed")
    assert [(e["event"]["adw_id"], e["type"]) for e in ended] == [
        ("ok1", "run_completed"), ("bad1", "run_failed"), ("hold", "run_completed"),
        ("wait1", "run_completed"), ("multi", "run_completed"), ("multi", "run_completed"),
        ("multi", "run_completed"),
    ]  # fmt: skip
    both = run_json(capsys, log, "events", "--adw-id", "bad1", "--type", "run_failed")
    assert [e["type"] for e in both] == ["run_failed"]
    system = run_json(capsys, log, "events", "--stream", "system")
    assert [e["type"] for e in system] == ["service_started", "service_stopped"]


def test_events_since_and_until_seq_are_inclusive(
    capsys: pytest.CaptureFixture[str], log: Log, events: list[dict[str, Any]]
) -> None:
    middle = run_json(capsys, log, "events", "--since", "3", "--until", "5")
    assert [e["seq"] for e in middle] == [3, 4, 5]
    tail = run_json(capsys, log, "events", "--since", str(len(events)))
    assert [e["seq"] for e in tail] == [len(events)]
    assert run_json(capsys, log, "events", "--since", str(len(events) + 1)) == []


def test_events_since_and_until_time(
    capsys: pytest.CaptureFixture[str], log: Log, events: list[dict[str, Any]]
) -> None:
    # A moment between two events far enough apart to name it exactly.
    a, b = next((a, b) for a, b in itertools.pairwise(events) if b["ts"] - a["ts"] > 0.01)
    mid = (a["ts"] + b["ts"]) / 2
    naive_utc = datetime.fromtimestamp(mid, UTC).replace(tzinfo=None).isoformat()
    after = run_json(capsys, log, "events", "--since", naive_utc)
    assert after == [e for e in events if e["seq"] >= b["seq"]]
    before = run_json(capsys, log, "events", "--until", f"{mid:.6f}")
    assert before == [e for e in events if e["seq"] <= a["seq"]]
    with_offset = datetime.fromtimestamp(mid, UTC).astimezone().isoformat()
    assert run_json(capsys, log, "events", "--until", with_offset) == before
    mixed = run_json(capsys, log, "events", "--since", "2", "--until", f"@{mid}")
    assert [e["seq"] for e in mixed] == list(range(2, a["seq"] + 1))
    assert run_json(capsys, log, "events", "--until", "2000-01-01T00:00:00Z") == []


def test_events_for_a_person_are_one_line_each_without_colour(
    capsys: pytest.CaptureFixture[str], log: Log, events: list[dict[str, Any]]
) -> None:
    code, out, _ = run(capsys, "events", "--data-dir", str(log.data_dir), "--adw-id", "bad1")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == len([e for e in events if e["stream"] == "workflow:bad1"])
    assert "run_queued" in lines[0]
    assert "(by anonymous)" in lines[0]
    assert "run_failed" in lines[-3]
    assert "#fail" in lines[-3]
    assert "error_reported" in lines[-2]  # every failed run is classified and reported
    assert "workflow error" in lines[-2]
    assert "recovery_offered" in lines[-1]  # and what the user can do about it
    assert "\x1b[" not in out


def test_colour_when_forced(
    capsys: pytest.CaptureFixture[str], log: Log, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    _, out, _ = run(capsys, "events", "--data-dir", str(log.data_dir), "--type", "run_failed")
    assert "\x1b[" in out


def test_bad_arguments_get_a_clear_error(capsys: pytest.CaptureFixture[str], log: Log) -> None:
    data = ("--data-dir", str(log.data_dir))
    code, _, err = run(capsys, "events", *data, "--since", "yesterday")
    assert code == 2
    assert "'yesterday' is not a time" in err
    code, _, err = run(capsys, "events", *data, "--follow", "--until", "3")
    assert (code, "no --until" in err) == (2, True)
    with pytest.raises(SystemExit):
        main(["events", *data, "--type", "run_exploded"])
    with pytest.raises(SystemExit):
        main(["events", *data, "--adw-id", "a", "--stream", "system"])


def test_parse_bound_tells_seqs_from_times() -> None:
    assert parse_bound("42") == Bound(seq=42)
    one_am = datetime(2026, 11, 26, 1, tzinfo=UTC).timestamp()
    assert parse_bound("2026-11-26T01:00:00") == Bound(ts=one_am)
    assert parse_bound("2026-11-26T02:00:00+01:00") == Bound(ts=one_am)
    assert parse_bound("2026-11-26T01:00:00Z") == Bound(ts=one_am)
    assert parse_bound(f"{one_am}") == Bound(ts=one_am)
    assert parse_bound(f"@{int(one_am)}") == Bound(ts=one_am)
    assert parse_time(str(int(one_am))) == one_am
    for bad in ("nan", "soon", "1.5.2", ""):
        with pytest.raises(QueryError):
            parse_bound(bad)


# -- inspect -----------------------------------------------------------------------


def test_inspect_a_completed_run(capsys: pytest.CaptureFixture[str], log: Log) -> None:
    code, out, _ = run(capsys, "inspect", "ok1", "--data-dir", str(log.data_dir))
    assert code == 0
    assert "Run 1 of 1: adw_plan_iso for ok1: completed" in out
    assert str(log.data_dir / "agents/ok1/adw_plan_iso/execution.log") in out
    for kind in ("run_queued", "run_started", "run_progress", "run_completed"):
        assert kind in out
    assert "+0." in out  # the time since the previous step
    assert "outcome: completed; waited " in out
    [run_] = run_json(capsys, log, "inspect", "ok1")
    assert (run_["status"], run_["reason"], run_["exit_code"]) == ("completed", "completed", 0)
    assert run_["duration_s"] > 0
    steps = run_["steps"]
    assert steps[0]["delta_s"] is None
    assert steps[0]["event"]["type"] == "run_queued"
    assert [s["seq"] for s in steps] == sorted(s["seq"] for s in steps)
    for previous, step in itertools.pairwise(steps):
        assert step["delta_s"] == pytest.approx(step["ts"] - previous["ts"])
    assert steps[-1]["elapsed_s"] == pytest.approx(steps[-1]["ts"] - steps[0]["ts"])


def test_inspect_a_failed_run(capsys: pytest.CaptureFixture[str], log: Log) -> None:
    code, out, _ = run(capsys, "inspect", "bad1", "--data-dir", str(log.data_dir))
    assert code == 0
    assert "adw_build_iso for bad1: failed" in out
    assert "outcome: failed: exited with code 1" in out
    assert "(exit code 1)" in out
    [run_] = run_json(capsys, log, "inspect", "bad1")
    assert run_["status"] == "failed"
    assert "#fail" in run_["reason"]
    assert run_["exit_code"] == 1
    assert run_["logs_path"].endswith("agents/bad1/adw_build_iso/execution.log")


def test_inspect_shows_every_run_of_an_adw_id_in_order(
    capsys: pytest.CaptureFixture[str], log: Log
) -> None:
    runs = run_json(capsys, log, "inspect", "multi")
    assert [r["workflow_type"] for r in runs] == ["adw_plan_iso", "adw_test_iso", "adw_plan_iso"]
    assert [r["status"] for r in runs] == ["completed"] * 3
    assert runs[0]["steps"][-1]["seq"] < runs[1]["steps"][0]["seq"]
    assert runs[1]["steps"][-1]["seq"] < runs[2]["steps"][0]["seq"]
    _, out, _ = run(capsys, "inspect", "multi", "--data-dir", str(log.data_dir))
    assert "Run 3 of 3: adw_plan_iso for multi: completed" in out


def test_inspect_unknown_adw_id_exits_1(capsys: pytest.CaptureFixture[str], log: Log) -> None:
    code, out, err = run(capsys, "inspect", "nobody", "--data-dir", str(log.data_dir))
    assert (code, out) == (1, "")
    assert "no events for adw_id 'nobody'" in err


# -- replay ------------------------------------------------------------------------


def test_replay_at_a_seq_where_a_run_was_running(
    capsys: pytest.CaptureFixture[str], log: Log, events: list[dict[str, Any]]
) -> None:
    started = log.seq_of("ok1", "run_started")
    code, out, _ = run(capsys, "replay", "--until", str(started), "--data-dir", str(log.data_dir))
    assert code == 0
    assert f"Projections at seq {started} " in out
    [line] = [line for line in out.splitlines() if line.startswith("ok1 ")]
    assert "running" in line
    assert "Queue: nobody waiting" in out
    [state] = run_json(capsys, log, "replay", "--until", str(started))
    assert state["seq"] == started
    assert state["at"] == events[started - 1]["ts"]
    assert [(r["adw_id"], r["status"]) for r in state["runs"]] == [("ok1", "running")]
    assert state["metrics"] == {}


def test_replay_shows_the_queue_and_metrics_of_that_moment(
    capsys: pytest.CaptureFixture[str], log: Log, events: list[dict[str, Any]]
) -> None:
    queued = log.seq_of("wait1", "run_queued")
    [state] = run_json(capsys, log, "replay", "--until", str(queued))
    statuses = {r["adw_id"]: r["status"] for r in state["runs"]}
    assert statuses == {"ok1": "completed", "bad1": "failed", "hold": "running", "wait1": "queued"}
    [entry] = state["queue"]
    assert (entry["adw_id"], entry["position"], entry["queue_length"]) == ("wait1", 1, 1)
    assert entry["estimated_wait_s"] >= 0
    assert state["metrics"]["adw_plan_iso"]["completed"] == 1
    assert state["metrics"]["adw_build_iso"]["failed"] == 1
    _, out, _ = run(capsys, "replay", "--until", str(queued), "--data-dir", str(log.data_dir))
    assert "1/1" in out
    assert "adw_build_iso" in out
    # The same point named by its time.
    at = datetime.fromtimestamp(events[queued - 1]["ts"] + 0.001, UTC).isoformat()
    [by_time] = run_json(capsys, log, "replay", "--until", at)
    assert by_time["seq"] >= queued
    assert {r["adw_id"]: r["status"] for r in by_time["runs"]}["wait1"] in ("queued", "running")


def test_replay_to_the_end_matches_what_happened(
    capsys: pytest.CaptureFixture[str], log: Log, events: list[dict[str, Any]]
) -> None:
    [state] = run_json(capsys, log, "replay", "--until", str(len(events) + 100))
    assert state["seq"] == len(events)
    assert state["queue"] == []
    assert all(r["status"] in ("completed", "failed") for r in state["runs"])
    assert state["metrics"]["adw_plan_iso"]["completed"] == 4


# -- audit -------------------------------------------------------------------------


def test_audit_shows_accepted_and_rejected_triggers(
    capsys: pytest.CaptureFixture[str], log: Log
) -> None:
    entries = run_json(capsys, log, "audit")
    assert {e["outcome"] for e in entries} == {"accepted", "rejected"}
    [rejected] = [e for e in entries if e["outcome"] == "rejected"]
    assert rejected["workflow_type"] == "adw_fly_iso"
    assert rejected["reason"].startswith("validation_error: ")
    assert rejected["principal"] == "anonymous"
    assert [e["adw_id"] for e in entries if e["outcome"] == "accepted"] == [
        "ok1", "bad1", "hold", "wait1", "multi", "multi", "multi",
    ]  # fmt: skip
    code, out, _ = run(capsys, "audit", "--data-dir", str(log.data_dir))
    assert code == 0
    assert "accepted" in out
    assert "rejected" in out
    assert "adw_fly_iso" in out


def test_audit_filters(capsys: pytest.CaptureFixture[str], log: Log) -> None:
    only = run_json(capsys, log, "audit", "--outcome", "rejected")
    assert [e["workflow_type"] for e in only] == ["adw_fly_iso"]
    assert [e["adw_id"] for e in run_json(capsys, log, "audit", "--adw-id", "ok1")] == ["ok1"]
    assert len(run_json(capsys, log, "audit", "--principal", "anonymous", "--limit", "2")) == 2
    assert run_json(capsys, log, "audit", "--principal", "someone-else") == []
    first = run_json(capsys, log, "audit")[1]
    later = run_json(capsys, log, "audit", "--since", repr(first["ts"]))
    assert later[0] == first
    assert run_json(capsys, log, "audit", "--since", "2999-01-01T00:00:00") == []


# -- where the data is -------------------------------------------------------------


@pytest.mark.parametrize("command", [["events"], ["inspect", "x"], ["replay", "--until", "1"]])
def test_missing_data_dir_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: list[str]
) -> None:
    missing = tmp_path / "nowhere"
    code, out, err = run(capsys, *command, "--data-dir", str(missing))
    assert (code, out) == (2, "")
    assert err.startswith(f"adwd: error: No event log at {missing / 'events.db'}")
    assert not missing.exists()  # read-only: nothing created


def test_audit_without_views_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, "audit", "--data-dir", str(tmp_path))
    assert code == 2
    assert err.startswith(f"adwd: error: No views at {tmp_path / 'views.db'}")
    assert list(tmp_path.iterdir()) == []


def test_data_dir_from_environment_and_config(
    capsys: pytest.CaptureFixture[str],
    log: Log,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    events: list[dict[str, Any]],
) -> None:
    monkeypatch.setenv("ADWD_DATA_DIR", str(log.data_dir))
    code, out, _ = run(capsys, "events", "--json")
    assert (code, len(out.splitlines())) == (0, len(events))
    monkeypatch.delenv("ADWD_DATA_DIR")
    config = tmp_path / "adwd.toml"
    config.write_text(f"data_dir = {json.dumps(str(log.data_dir))}\n")
    code, out, _ = run(capsys, "inspect", "ok1", "--config", str(config), "--json")
    assert code == 0
    assert json.loads(out)["adw_id"] == "ok1"


# -- as a real process -------------------------------------------------------------


def _cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "adwd", *argv]


def test_entry_point_as_a_subprocess(log: Log, events: list[dict[str, Any]]) -> None:
    done = subprocess.run(
        _cli("events", "--data-dir", str(log.data_dir), "--json"),
        cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == events


def _reader(proc: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.put(line)


def _wait_line(lines: queue.Queue[str], predicate: Any) -> dict[str, Any]:
    while True:
        event = json.loads(lines.get(timeout=TIMEOUT))
        if predicate(event):
            return event


def test_follow_prints_new_events_as_the_service_commits_them(tmp_path: Path) -> None:
    with services(tmp_path) as start:
        server = start()
        argv = _cli("events", "--follow", "--json", "--data-dir", str(server.data_dir))
        with subprocess.Popen(
            argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as proc:
            try:
                lines: queue.Queue[str] = queue.Queue()
                reader = threading.Thread(target=_reader, args=(proc, lines), daemon=True)
                reader.start()
                first = _wait_line(lines, lambda e: True)
                assert (first["seq"], first["type"]) == (1, "service_started")
                client = server.client()
                adw_id = client.trigger("adw_plan_iso")["data"]["adw_id"]  # after follow began
                done = _wait_line(lines, lambda e: e["type"] == "run_completed")
                assert done["event"]["adw_id"] == adw_id
                proc.send_signal(signal.SIGINT)  # Ctrl-C
                assert proc.wait(TIMEOUT) == 0
                reader.join(TIMEOUT)
                assert proc.stderr is not None
                assert "Traceback" not in proc.stderr.read()
            finally:
                if proc.poll() is None:
                    proc.kill()
