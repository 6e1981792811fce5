"""Who triggered each run, and of what type: what a scoped principal may see.

The router keeps one :class:`RunOwners` (loop thread only), filled from the
log's ``run_queued`` events at start (:func:`owners`) and from each one it
publishes since. A principal limited to its own runs or to some workflow
types (docs/security.md) sees the runs this table puts within its grant;
indexed by principal and by type, so finding them costs what they are,
not the whole table.

Bounded: the newest ``MAX_RUNS`` adw_ids (insertion order is recency: a
re-queued adw_id moves to the end, with its new type and owner); an older
run is hidden from scoped principals (closed, not open).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator

from adwd.actors.auth import Permission, Principal, within
from adwd.events.domain import RunQueued
from adwd.events.store import StoredEvent

MAX_RUNS = 100_000  # adw_ids kept; ~250 bytes each with the indexes (docs/security.md)

Run = tuple[str, str]  # (workflow_type, principal)


class RunOwners:
    """Each adw_id's (workflow_type, principal) of its latest run_queued, bounded."""

    def __init__(self) -> None:
        self._runs: dict[str, Run] = {}
        self._by_owner: dict[str, set[str]] = {}
        self._by_type: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._runs)

    def get(self, adw_id: str) -> Run | None:
        """The run's (workflow_type, principal), or None if unknown (or dropped)."""
        return self._runs.get(adw_id)

    def items(self) -> Iterator[tuple[str, Run]]:
        """Every adw_id and its run, oldest first."""
        return iter(self._runs.items())

    def remember(self, adw_id: str, workflow_type: str, owner: str) -> None:
        """Record a run as the newest; past MAX_RUNS the oldest is dropped. The type
        and owner strings repeat across runs: interned, they are stored once."""
        self._forget(adw_id)
        run = (sys.intern(workflow_type), sys.intern(owner))
        self._runs[adw_id] = run
        self._by_type.setdefault(run[0], set()).add(adw_id)
        self._by_owner.setdefault(run[1], set()).add(adw_id)
        while len(self._runs) > MAX_RUNS:
            self._forget(next(iter(self._runs)))

    def granted(self, p: Principal) -> frozenset[str]:
        """The adw_ids within ``p``'s grant (its workflow types, its own runs)."""
        if Permission.ADMIN in p.permissions or (p.workflow_types is None and not p.own_runs_only):
            return frozenset(self._runs)
        if p.own_runs_only:
            mine = self._by_owner.get(p.user_id, set())
            if p.workflow_types is None:
                return frozenset(mine)
            return frozenset(a for a in mine if within(p, *self._runs[a]))
        assert p.workflow_types is not None
        return frozenset().union(*(self._by_type.get(t, set()) for t in p.workflow_types))

    def _forget(self, adw_id: str) -> None:
        run = self._runs.pop(adw_id, None)
        if run is None:
            return
        for index, key in ((self._by_type, run[0]), (self._by_owner, run[1])):
            found = index.get(key)
            if found is not None:
                found.discard(adw_id)
                if not found:
                    del index[key]


def owners(events: Iterable[StoredEvent]) -> RunOwners:
    """The table of ``events`` (in seq order): each adw_id's latest ``run_queued``."""
    runs = RunOwners()
    for stored in events:
        e = stored.event
        if isinstance(e, RunQueued):
            runs.remember(e.adw_id, e.workflow_type, stored.principal)
    return runs
