"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from adwd.events.store import EventStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    """A fresh, writable event log in the test's own directory."""
    s = EventStore(tmp_path / "events.db")
    try:
        yield s
    finally:
        s.close()
