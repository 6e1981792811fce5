"""The catch-ups' read-only connections: reused, and all closed at the end."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from adwd.events.domain import ServiceStopped
from adwd.events.errors import StoreError
from adwd.events.store import EventStore, NewEvent
from adwd.transport.catchup import Readers


def test_readers_are_reused_and_closed(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with pytest.raises(StoreError, match="No event log"):
        Readers(path).borrow()  # no log yet: the catch-up has nothing to send
    writer = EventStore(path)
    writer.append([NewEvent("system", ServiceStopped(reason="x"))])
    readers = Readers(path)
    first, second = readers.borrow(), readers.borrow()  # two catch-ups at once
    assert first is not second
    readers.give_back(first)
    assert readers.borrow() is first  # the next catch-up reuses it
    writer.append([NewEvent("system", ServiceStopped(reason="y"))])
    assert first.last_seq() == 2  # a reused reader sees later commits
    readers.give_back(first)
    readers.close()
    with pytest.raises((StoreError, sqlite3.ProgrammingError)):
        first.last_seq()
    readers.give_back(second)  # given back after close: closed too
    with pytest.raises((StoreError, sqlite3.ProgrammingError)):
        second.last_seq()
    writer.close()
