"""The Kanban board's own messages: sessions, ticket notifications (issue 14).

``register_session``: the tabs of one browser session send the same
``session_id``; adwd counts that session's live connections once
(:class:`SessionRegistry`) and answers how many tabs it has. Every tab still
gets every message: deduplicating delivery by session, as the original server
did, would leave the other tabs blind.

``ticket_notification``: a card created or restarted. A restart (a stage
other than backlog) with an ``old_adw_id`` cleans that adw_id up as
``DELETE /api/adws/<adw_id>`` does (its runs' process groups stopped through
the scheduler, its work removed), as the original server cleaned up the
card's previous run.
"""

from __future__ import annotations

import threading

from adwd.events.wire import TicketNotificationData

RESTART_STAGES = frozenset({"plan", "build", "test", "review", "document", "errored"})


class SessionRegistry:
    """Which connections belong to which board session (thread-safe: connections
    run on a shared dispatcher's threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_session: dict[str, set[str]] = {}
        self._by_connection: dict[str, str] = {}

    def register(self, session_id: str, connection_id: str) -> int:
        """Put the connection in the session (leaving any other); its connection count."""
        with self._lock:
            self._leave(connection_id)
            self._by_connection[connection_id] = session_id
            members = self._by_session.setdefault(session_id, set())
            members.add(connection_id)
            return len(members)

    def forget(self, connection_id: str) -> None:
        """The connection closed."""
        with self._lock:
            self._leave(connection_id)

    def sessions(self) -> int:
        """Live sessions: several tabs of one session count once."""
        with self._lock:
            return len(self._by_session)

    def _leave(self, connection_id: str) -> None:
        old = self._by_connection.pop(connection_id, None)
        if old is not None:
            members = self._by_session.get(old, set())
            members.discard(connection_id)
            if not members:
                self._by_session.pop(old, None)


SESSIONS = SessionRegistry()  # the service's one registry (a test may make its own)


def restart_of(ticket: TicketNotificationData) -> str | None:
    """The adw_id whose runs a ticket notification ends: its ``old_adw_id`` when the
    card was restarted from a stage other than backlog, else None."""
    stage = (ticket.stage or "").lower()
    return ticket.old_adw_id if stage in RESTART_STAGES and ticket.old_adw_id else None
