"""The run's agent watcher: tails ``agents/<adw_id>/*/raw_output.jsonl``, and
announces review screenshots, the adw_id's spec files and ``adw_state.json``.

The ADW scripts run their coding agent with stream-json output into
``<project_dir>/agents/<adw_id>/<agent_name>/raw_output.jsonl``. The watcher
polls those files (every ``POLL_S``; inotify would save the idle polls but
not the reading, and polling works on every filesystem), reads what was
appended since its offsets, and hands the complete lines, decoded, to the
run's actor with the offsets reached. Offsets live in the event log (an
``agent_offsets`` event committed with the activity read), so a restart
resumes exactly where the last recorded record ended.

A line still being written (no newline yet) waits for the next poll. A line
longer than ``MAX_LINE`` bytes, or one that is not JSON, is skipped; its size
goes to the actor, which notes the cut. A file that shrank or was replaced
(another inode) is read again from its start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

log = logging.getLogger(__name__)

PATTERN = "*/raw_output.jsonl"
POLL_S = 0.25  # between polls of a run's files: the bound on how late a record is seen
MAX_LINE = 1024 * 1024  # bytes of one record
MAX_READ = 4 * 1024 * 1024  # bytes read from one file per poll: bounds one batch
MAX_ITEMS = 5000  # records handed to the actor at once

Offsets = dict[str, list[int]]  # relative path -> [inode, offset]
Items = list[tuple[str, Any]]
_decode = msgspec.json.Decoder().decode


def read_new(root: Path, offsets: Offsets) -> tuple[Items, Offsets, bool]:
    """What was appended to the agent files under ``root`` since ``offsets``.

    Returns the items (``(path, record)``; an int record is the size of a line
    skipped), the new offsets, and whether a file has more to read now (its
    budget for this call ran out).
    """
    items: Items = []
    new = dict(offsets)
    more = False
    try:
        paths = sorted(root.glob(PATTERN))
    except OSError:
        return items, new, False
    _new_files(root, new, items)
    for path in paths:
        rel = path.relative_to(root).as_posix()
        try:
            with path.open("rb") as f:
                stat = os.fstat(f.fileno())
                inode, start = offsets.get(rel, [stat.st_ino, 0])
                if inode != stat.st_ino or stat.st_size < start:
                    start = 0  # replaced or truncated: a new output
                f.seek(start)
                budget = min(MAX_READ, max(0, MAX_ITEMS - len(items)) * MAX_LINE)
                data = f.read(budget)
        except OSError as exc:
            log.debug("cannot read %s: %s", path, exc)
            continue
        consumed, found = _lines(data, rel)
        if len(data) >= budget > 0:
            more = True
        items.extend(found)
        new[rel] = [stat.st_ino, start + consumed]
        if len(items) >= MAX_ITEMS:
            more = True
            break
    return items, new, more


IMAGES = (".png", ".jpg", ".jpeg", ".gif")
STATE = "adw_state.json"
SPECS = "specs/"  # the key prefix of the project's spec files (<cwd>/specs/*<adw_id>*.md)
MAX_STATE = 1024 * 1024  # bytes of an adw_state.json worth reading


def _new_files(root: Path, offsets: Offsets, items: Items) -> None:
    """Files announced once each (review screenshots, the adw_id's spec files), and
    adw_state.json each time it changes: items ``(key, {"size": n})`` or, for the
    state, ``(key, the state)``; ``offsets`` remembers what was announced."""
    found: list[tuple[str, Path]] = []
    with contextlib.suppress(OSError):
        found += [
            (p.relative_to(root).as_posix(), p)
            for p in sorted(root.glob("*/review_img/*"))
            if p.suffix.lower() in IMAGES
        ]
        specs = root.parent.parent / "specs"
        found += [(SPECS + p.name, p) for p in sorted(specs.glob(f"*{root.name}*.md"))]
    for key, path in found:
        try:
            stat = path.stat()
        except OSError:
            continue
        if offsets.get(key, [None])[0] != stat.st_ino:
            offsets[key] = [stat.st_ino, stat.st_size]
            items.append((key, {"size": stat.st_size}))
    state = root / STATE
    try:
        stat = state.stat()
        if [stat.st_ino, stat.st_mtime_ns] != offsets.get(STATE) and stat.st_size <= MAX_STATE:
            value = _decode(state.read_bytes())
            offsets[STATE] = [stat.st_ino, stat.st_mtime_ns]
            if isinstance(value, dict):
                items.append((STATE, value))
    except (OSError, msgspec.DecodeError):
        pass  # absent, or being rewritten: the next poll reads it


def _lines(data: bytes, rel: str) -> tuple[int, Items]:
    """The complete lines of ``data``: how many bytes they take, and their items."""
    items: Items = []
    pos = 0
    while True:
        end = data.find(b"\n", pos)
        if end < 0:
            rest = len(data) - pos
            if rest > MAX_LINE:  # no newline within a record's maximum: skip what is here
                items.append((rel, rest))
                return len(data), items
            return pos, items
        line = data[pos:end]
        pos = end + 1
        if not line.strip():
            continue
        if len(line) > MAX_LINE:
            items.append((rel, len(line)))
            continue
        try:
            items.append((rel, _decode(line)))
        except (msgspec.DecodeError, RecursionError, ValueError):
            items.append((rel, len(line)))


class Watcher:
    """Polls one run's agent files in a thread; ``drain`` reads what is left."""

    def __init__(
        self,
        root: Path,
        offsets: Offsets,
        deliver: Callable[[Items, Offsets], None],
        poll_s: float = POLL_S,
        name: str = "adw-watch",
    ) -> None:
        self._root = root
        self._offsets = dict(offsets)
        self._deliver = deliver
        self._poll_s = min(max(poll_s, 0.02), 2.0)  # bounded: never busy, never asleep
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one reader at a time: the thread or drain
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._serial = 0  # of the batches read: newer offsets win over older ones

    @property
    def serial(self) -> int:
        """The number of the last batch read (deliveries are numbered from 1)."""
        return self._serial

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def _poll(self, deliver: Callable[[Items, Offsets], None]) -> bool:
        with self._lock:
            items, offsets, more = read_new(self._root, self._offsets)
            if items or offsets != self._offsets:
                self._offsets = offsets
                self._serial += 1
                deliver(items, offsets)
            return more

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                more = self._poll(self._deliver)
            except Exception:  # never lose the watcher to a surprise; say it, go on
                log.exception("agent watcher of %s failed a poll", self._root)
                more = False
            if not more:
                self._stop.wait(self._poll_s)

    def drain(self) -> list[tuple[Items, Offsets, int]]:
        """Stop polling; return everything complete that is left, in numbered
        batches (the caller, the run's actor, records them before the run's end).
        What the thread delivered before may still be in the actor's mailbox: its
        number is lower, so its offsets never replace these."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        batches: list[tuple[Items, Offsets, int]] = []

        def keep(items: Items, offsets: Offsets) -> None:
            batches.append((items, offsets, self._serial))  # each batch with its own number

        with contextlib.suppress(Exception):
            while self._poll(keep) and (
                len(batches) < 1000  # a writer that never stops cannot hold the end
            ):
                pass
        return batches


def recorded_offsets(events_db: Path, adw_id: str) -> Offsets:
    """Where the last watcher of ``adw_id`` stopped: the offsets of its last
    ``agent_offsets`` event (empty if none, or if the log cannot be read)."""
    # Imported here: the store is only needed at a watcher's start.
    from adwd.events.domain import AgentOffsets, workflow_stream
    from adwd.events.errors import StoreError
    from adwd.events.store import EventStore

    if not events_db.exists():
        return {}
    last: Offsets = {}
    try:
        store = EventStore(events_db, readonly=True)
    except StoreError as exc:
        log.warning(
            "agent offsets of %s not read (%s): reading its files from the start", adw_id, exc
        )
        return {}
    try:
        for stored in store.read(stream=workflow_stream(adw_id), types=["agent_offsets"]):
            if isinstance(stored.event, AgentOffsets):
                last = {**last, **stored.event.offsets}
    except Exception as exc:  # never fail a run's start over its agent offsets: say it
        log.warning("agent offsets of %s not read (%s): reading its files from the start",
                    adw_id, exc)  # fmt: skip
        return {}
    finally:
        store.close()
    return last
