"""``adwd audit --security``: the security trail of the log, filtered.

A thin query over :func:`adwd.projections.audit.security_trail`, which folds
the event log (read-only, safe while the service runs).
"""

from __future__ import annotations

from pathlib import Path

from adwd.events.store import EventStore
from adwd.projections.audit import SecurityEntry, security_trail
from adwd.service.debug import QueryError, parse_time

EVENTS_FILE = "events.db"


def security_entries(
    data_dir: Path,
    *,
    principal: str | None = None,
    address: str | None = None,
    outcome: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: int | None = None,
) -> list[SecurityEntry]:
    """The trail's entries matching every filter given, oldest first."""
    if limit is not None and limit < 0:
        raise QueryError("--limit must be 0 or more")
    since_ts = parse_time(since) if since else None
    until_ts = parse_time(until) if until else None
    store = EventStore(Path(data_dir) / EVENTS_FILE, readonly=True)
    try:
        trail = security_trail(store.read())
    finally:
        store.close()
    found = [
        e
        for e in trail
        if (principal is None or e.principal == principal)
        and (address is None or e.address == address)
        and (outcome is None or e.outcome == outcome)
        and (since_ts is None or e.ts >= since_ts)
        and (until_ts is None or e.ts <= until_ts)
    ]
    return found if limit is None else found[:limit]
