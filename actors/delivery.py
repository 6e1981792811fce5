"""Delivery: for one connection, which committed messages to send now, which to
hold while a catch-up runs, and which to drop. Pure (sans-I/O), in the manner of
the websockets library's ``Protocol``: the router (actors/router.py) feeds it
what was committed and what the connection asked for, and writes what it says.

The promises it keeps (tests/actors/test_delivery.py checks them as a state
machine): a client that resumes from a seq gets every later message of the
runs it follows exactly once and in seq order, whether a message reached it
through the catch-up or live, across nested catch-ups (a subscribe during the
first); a reply addressed to the connection (a ``trigger_response``...) is
delivered exactly once, even when the catch-up covered its seq; nothing is
delivered to a connection that may not read runs.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Literal

# A message held during a catch-up: (seq, frame, addressed to this connection, adw_id).
Held = tuple[int, bytes, bool, str | None]


@dataclass(eq=False)
class Delivery:
    """One connection's delivery state; it starts paused (its first catch-up)."""

    follows: frozenset[str] | None = None  # None: every run
    readable: bool = True  # False: not (yet) allowed to read runs (docs/security.md)
    held: list[Held] | None = field(default_factory=list)  # None: live
    held_bytes: int = 0
    pauses: int = 1  # catch-ups under way; live again at 0
    upto: int = 0  # highest seq the catch-ups under way covered
    cursor: int = 0  # the seq this connection has been brought up to

    def wants(self, adw_id: str | None, *, shown: bool = True) -> bool:
        """Whether a broadcast about ``adw_id`` is for this connection (``shown``:
        the principal's scope allows it; a broadcast about no run goes to all).

        While a catch-up runs it holds every run's: a subscribe may widen what it
        follows, and what it follows is only known when the catch-up ends.
        """
        return (
            self.readable
            and shown
            and (
                self.held is not None
                or self.follows is None
                or adw_id is None
                or adw_id in self.follows
            )
        )

    def pause(self) -> None:
        """A catch-up is about to run: hold live messages until it ends."""
        if self.held is None:
            self.held, self.held_bytes = [], 0
        self.pauses += 1

    def offer(self, seq: int, frame: bytes, adw_id: str | None, *, addressed: bool) -> bool:
        """A committed message for this connection: True to send it now, False
        when it is held for the end of the catch-up."""
        if self.held is None:
            self.cursor = seq
            return True
        self.held.append((seq, frame, addressed, adw_id))
        self.held_bytes += len(frame)
        return False

    def resume(
        self,
        upto: int,
        follows: Collection[str] | Literal[False] | None = False,
        shown: Callable[[str | None], bool] = lambda _adw_id: True,
    ) -> list[bytes] | None:
        """A catch-up that covered every seq <= ``upto`` ended: the held frames to
        send now, in order, or None while another catch-up still runs.

        ``follows``: the adw_ids to follow from now on (None: all; False: unchanged).
        What the catch-ups covered was sent by them (as events or as state); a
        reply to this connection is never replayed, so it is sent here exactly
        once, possibly after broadcasts of higher seqs (clients match replies by
        request_id). A subscribe may have narrowed what it follows meanwhile.
        """
        if follows is not False:
            self.follows = None if follows is None else frozenset(follows)
        self.pauses = max(0, self.pauses - 1)
        self.upto = max(self.upto, upto)
        self.cursor = max(self.cursor, upto)
        if self.pauses:
            return None
        pending, self.held, self.held_bytes = self.held or [], None, 0
        covered, self.upto = self.upto, 0
        if pending:
            # It is brought up to what it held too: a later subscribe without a since
            # resumes after these, not after the catch-up, or it gets them twice.
            self.cursor = max(self.cursor, pending[-1][0])
        # A message about no run (an alert) was routed by who may read it; it is held
        # like the others and only what the catch-up covered is left out.
        return [
            frame
            for seq, frame, addressed, adw_id in pending
            if addressed
            or (seq > covered and (adw_id is None or self.wants(adw_id, shown=shown(adw_id))))
        ]

    def over(self, unsent: int, limit: int) -> bool:
        """Whether held frames and ``unsent`` bytes (the transport's) exceed ``limit``:
        the client is too slow and is closed (1013) to resume later."""
        return self.held_bytes + unsent > limit

    def drop(self) -> None:
        """Forget what is held (the connection is being closed)."""
        if self.held is not None:
            self.held, self.held_bytes = [], 0
