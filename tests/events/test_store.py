"""EventStore: appends read back identical, filters, durability pragmas, upcasting, errors."""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adwd.events.domain import DOMAIN_EVENTS, RunProgress, ServiceStopped, event_type
from adwd.events.errors import AdwdError, StoreError
from adwd.events.store import EventStore, NewEvent
from adwd.events.testing import for_type
from adwd.events.upcast import UPCASTERS

STREAMS = ("system", "workflow:a", "workflow:b", "connection:c")
TYPES = [str(cls.__struct_config__.tag) for cls in DOMAIN_EVENTS]

new_events = st.builds(
    NewEvent,
    stream=st.sampled_from(STREAMS),
    event=st.one_of([for_type(cls) for cls in DOMAIN_EVENTS]),
    principal=st.sampled_from(["system", "alice"]),
    correlation_id=st.text(max_size=8),
)
batches = st.lists(st.lists(new_events, min_size=1, max_size=5), max_size=6)


def _stopped(reason: str, stream: str = "system") -> NewEvent:
    return NewEvent(stream, ServiceStopped(reason=reason))


def _insert_raw(path: Path, seq: int, kind: str, version: int, payload: object) -> None:
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (seq, 1.0, "workflow:old", kind, version, "system", None,
                 msgspec.json.encode(payload).decode()),
            )  # fmt: skip
    finally:
        conn.close()


@settings(max_examples=40, deadline=None)
@given(batches=batches, data=st.data())
def test_appended_batches_read_back_identical_and_filterable(
    batches: list[list[NewEvent]], data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore(Path(tmp) / "events.db")
        try:
            stored = [e for batch in batches for e in store.append(batch)]
            assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
            assert [(e.stream, e.event) for e in stored] == [
                (n.stream, n.event) for batch in batches for n in batch
            ]
            assert list(store.read()) == stored
            assert store.last_seq() == len(stored)

            since = data.draw(st.integers(0, len(stored) + 1), label="since")
            assert list(store.read(since)) == stored[since:]
            until = data.draw(st.integers(since, len(stored) + 1), label="until")
            assert list(store.read(since, until=until)) == stored[since:until]

            stream = data.draw(st.sampled_from(STREAMS), label="stream")
            types = data.draw(st.lists(st.sampled_from(TYPES), min_size=1), label="types")
            assert list(store.read(stream=stream)) == [e for e in stored if e.stream == stream]
            assert list(store.read(types=types, batch_size=2)) == [
                e for e in stored if e.type in types
            ]
        finally:
            store.close()


def test_seqs_continue_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    first = EventStore(path)
    try:
        first.append([_stopped("a"), _stopped("b")])
    finally:
        first.close()
    second = EventStore(path)
    try:
        assert [e.seq for e in second.append([_stopped("c")])] == [3]
        assert [e.event.reason for e in second.read()] == ["a", "b", "c"]  # type: ignore[union-attr]
    finally:
        second.close()


def test_empty_store_has_last_seq_zero(store: EventStore) -> None:
    assert store.last_seq() == 0
    assert list(store.read()) == []


def test_write_connection_is_wal_and_synchronous_full(store: EventStore) -> None:
    assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_epoch_is_stable_across_reopen_and_distinct_per_log(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    first = EventStore(path)
    epoch = first.epoch
    first.close()
    reopened, reader = EventStore(path), EventStore(path, readonly=True)
    other = EventStore(tmp_path / "other.db")
    try:
        assert len(epoch) == 32
        assert reopened.epoch == epoch
        assert reader.epoch == epoch
        assert other.epoch != epoch
    finally:
        for s in (reopened, reader, other):
            s.close()


def test_readonly_reader_sees_writer_commits_and_cannot_append(store: EventStore) -> None:
    reader = EventStore(store.path, readonly=True)
    try:
        store.append([_stopped("x")])
        assert [e.seq for e in reader.read()] == [1]
        with pytest.raises(StoreError, match="Cannot append"):
            reader.append([_stopped("y")])
    finally:
        reader.close()


def test_readonly_store_on_missing_file_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "events.db"
    with pytest.raises(StoreError, match="--data-dir") as info:
        EventStore(path, readonly=True)
    assert str(path) in str(info.value)
    assert not path.parent.exists()


def test_readonly_store_under_a_path_with_hash(tmp_path: Path) -> None:
    path = tmp_path / "board#1" / "events.db"
    writer = EventStore(path)
    writer.append([_stopped("x")])
    writer.close()
    reader = EventStore(path, readonly=True)  # opens (and creates) tmp_path/"board" instead
    try:
        assert [e.seq for e in reader.read()] == [1]
    finally:
        reader.close()
        assert not (tmp_path / "board").exists()


@pytest.fixture
def upcaster_v0() -> Iterator[None]:
    def lift(payload: dict[str, object]) -> dict[str, object]:
        lifted = dict(payload)
        lifted["progress_percent"] = lifted.pop("percent")
        return lifted

    UPCASTERS[("run_progress", 0)] = lift
    try:
        yield
    finally:
        del UPCASTERS[("run_progress", 0)]


@pytest.mark.usefixtures("upcaster_v0")
def test_old_version_is_upcast_on_read(store: EventStore) -> None:
    old = {"type": "run_progress", "adw_id": "a1", "workflow_type": "w", "percent": 40}
    _insert_raw(store.path, 1, "run_progress", 0, old)
    [stored] = list(store.read())
    assert stored.event == RunProgress(adw_id="a1", workflow_type="w", progress_percent=40)
    assert stored.version == 0
    assert stored.correlation_id == ""
    assert event_type(stored.event) == "run_progress"


def test_unknown_stored_type_raises_store_error(store: EventStore) -> None:
    _insert_raw(store.path, 1, "from_the_future", 1, {"type": "from_the_future"})
    with pytest.raises(StoreError, match="from_the_future"):
        list(store.read())


def test_a_newer_version_than_the_code_knows_is_refused(store: EventStore) -> None:
    newer = {"type": "run_progress", "adw_id": "a1", "workflow_type": "w", "eta_s": 3}
    _insert_raw(store.path, 1, "run_progress", 2, newer)
    with pytest.raises(StoreError, match=r"run_progress\) is version 2, newer than .* \(v1\)"):
        list(store.read())


def test_old_version_without_upcaster_raises_an_adwd_error(store: EventStore) -> None:
    old = {"type": "run_progress", "adw_id": "a1", "workflow_type": "w", "percent": 40}
    _insert_raw(store.path, 1, "run_progress", 0, old)
    with pytest.raises(AdwdError):
        list(store.read())


# -- backup ----------------------------------------------------------------------


def _rows(path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT * FROM events ORDER BY seq").fetchall()
    finally:
        conn.close()


def test_backup_copies_every_row_into_one_file_with_a_new_epoch(
    store: EventStore, tmp_path: Path
) -> None:
    store.append([_stopped(str(i), stream=STREAMS[i % 4]) for i in range(50)])
    copy = tmp_path / "copy.db"
    assert store.backup(copy) == (50, 50)
    assert _rows(copy) == _rows(store.path)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("copy")) == ["copy.db"]
    conn = sqlite3.connect(copy)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # self-contained
    finally:
        conn.close()
    restored = EventStore(copy, readonly=True)
    try:
        assert list(restored.read()) == list(store.read())
        assert len(restored.epoch) == 32
        assert restored.epoch != store.epoch  # a restore is never mistaken for the live log
    finally:
        restored.close()


def test_backup_of_an_empty_log(store: EventStore, tmp_path: Path) -> None:
    assert store.backup(tmp_path / "copy.db") == (0, 0)
    assert _rows(tmp_path / "copy.db") == []


def test_backup_is_the_snapshot_it_began_with_while_the_writer_appends(
    store: EventStore, tmp_path: Path
) -> None:
    big = "x" * 1900  # ~200 pages of log: many one-page steps
    store.append([NewEvent("workflow:a", RunProgress("a", "w", 50, message=big))] * 400)
    remaining: list[int] = []

    def append_between_steps(_status: int, left: int, _total: int) -> None:
        remaining.append(left)
        store.append([_stopped(f"during {len(remaining)}")])  # commits on another connection

    assert store.backup(tmp_path / "copy.db", pages=1, progress=append_between_steps) == (400, 400)
    assert len(remaining) > 100
    assert remaining == sorted(remaining, reverse=True)  # the copy never started over
    assert store.last_seq() == 400 + len(remaining)  # the writer was never blocked
    assert _rows(tmp_path / "copy.db") == _rows(store.path)[:400]


def test_backup_of_a_log_that_is_gone_says_so(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    EventStore(path).close()
    reader = EventStore(path, readonly=True)
    try:
        path.unlink()
        with pytest.raises(StoreError, match="--data-dir"):
            reader.backup(tmp_path / "copy.db")
    finally:
        reader.close()
