"""The log holds each run's events in order, and nothing reaches a client
before its event is committed."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from tests.integration.conftest import Running


def test_run_events_are_stored_in_order(server: Running) -> None:
    client = server.client()
    adw_id = client.trigger("adw_plan_iso", issue_number=3)["data"]["adw_id"]
    client.wait_terminal(adw_id)
    stored = [e for e in server.events() if e.stream == f"workflow:{adw_id}"]
    types = [e.type for e in stored]
    assert types[:2] == ["run_queued", "run_started"]
    assert types[-1] == "run_completed"
    assert set(types[2:-1]) == {"run_progress", "stage_changed", "run_logged"}
    seqs = [e.seq for e in stored]
    assert seqs == sorted(seqs)
    assert all(e.correlation_id for e in stored)  # each links back to the trigger's connection
    assert len({e.correlation_id for e in stored}) == 1


def test_every_message_with_a_seq_is_committed_when_it_arrives(server: Running) -> None:
    db = sqlite3.connect(f"file:{server.data_dir / 'events.db'}?mode=ro", uri=True)
    client = server.client()
    checked = []

    def committed(message: dict[str, object]) -> bool:
        seq = message.get("seq")
        if seq is not None:
            row = db.execute("SELECT type FROM events WHERE seq = ?", (seq,)).fetchone()
            assert row is not None, f"received seq {seq} before it was committed"
            checked.append(seq)
        return False

    ids = [client.trigger(t)["data"]["adw_id"] for t in ("adw_plan_iso", "adw_plan_iso")]
    for adw_id in ids:
        client.wait_terminal(adw_id)
    for message in client.seen:
        committed(message)
    db.close()
    assert len(checked) >= 8
    # Broadcasts arrive in seq order; replies such as trigger_response are matched by
    # request_id and may come after broadcasts of later events.
    broadcast = [m["seq"] for m in client.seen if m.get("seq") and m["type"] != "trigger_response"]
    assert broadcast == sorted(broadcast)


def test_log_is_durable_wal_with_full_sync(server: Running) -> None:
    db = sqlite3.connect(server.data_dir / "events.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_restart_keeps_the_log_and_runs_continue(
    start_service: Callable[..., Running], tmp_path: Path
) -> None:
    first = start_service()
    client = first.client()
    adw_id = client.trigger("adw_plan_iso")["data"]["adw_id"]
    client.wait_terminal(adw_id)
    client.close()
    first.clients.clear()
    first.service.stop()
    before = first.events()

    second = start_service(data_dir=first.data_dir)
    client = second.client()
    again = client.trigger("adw_plan_iso", adw_id=adw_id)
    assert again["seq"] > before[-1].seq
    assert client.wait_terminal(adw_id)["data"]["status"] == "completed"
    after = second.events()
    assert after[: len(before)] == before
    assert [e.type for e in after].count("service_started") == 2
