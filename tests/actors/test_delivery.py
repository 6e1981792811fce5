"""Delivery, the router's pure core, as a state machine: a connection that
resumes, narrows what it follows and re-subscribes while the log grows gets
every message it follows exactly once, in order, and every reply once."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from adwd.actors.delivery import Delivery

RUNS = ("a", "b", "c")


def _frame(seq: int, adw_id: str | None, addressed: bool) -> bytes:
    return f"{seq}:{adw_id or '-'}:{'r' if addressed else 'b'}".encode()


class Connection(RuleBasedStateMachine):
    """The log (broadcasts about runs, and replies to this connection), one
    connection's Delivery, and what the client received: live frames and the
    catch-ups' (which send every followed event of the log up to the head)."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[int, str | None, bool]] = []  # seq, adw_id, addressed
        self.delivery = Delivery()
        self.received: list[bytes] = []
        self.catchups: list[int] = []  # the head each running catch-up covers
        self.follows: frozenset[str] | None = None
        self.first_done = False
        self.seen_from = 0  # the seq the first catch-up started after (the client's since)
        self.sent_upto = 0  # the highest seq a catch-up's history has sent
        self.all_from = 0  # following every run since (after) this seq

    # -- the world --------------------------------------------------------------

    @rule(adw_id=st.sampled_from([*RUNS, None]), addressed=st.booleans())
    def commit(self, adw_id: str | None, addressed: bool) -> None:
        seq = len(self.log) + 1
        self.log.append((seq, adw_id, addressed))
        frame = _frame(seq, adw_id, addressed)
        # The router offers a broadcast to the connections that want it; a reply to its own.
        if (addressed or self.delivery.wants(adw_id)) and self.delivery.offer(
            seq, frame, adw_id, addressed=addressed
        ):
            self.received.append(frame)

    @precondition(lambda self: not self.catchups and not self.first_done)
    @rule(since=st.integers(0, 5))
    def first_catch_up_starts(self, since: int) -> None:
        """The connect's catch-up (the connection starts paused): from ``since``."""
        self.seen_from = self.all_from = min(since, len(self.log))
        self.catchups.append(len(self.log))
        self._send_history(self.seen_from, len(self.log))

    @precondition(lambda self: self.first_done or self.catchups)
    @rule(follows=st.none() | st.frozensets(st.sampled_from(RUNS), min_size=1))
    def subscribe(self, follows: frozenset[str] | None) -> None:
        """A subscribe: pause, send the history of what it now follows, resume."""
        self.delivery.pause()
        # From where the client is: what it got live, or what a catch-up sent it.
        start = max(self.delivery.cursor, self.sent_upto, self.seen_from)
        if follows is None and self.follows is not None:
            self.all_from = start  # what it did not follow before, it is not sent again
        self.follows = follows
        self.catchups.append(len(self.log))
        self._send_history(start, len(self.log), follows)

    @precondition(lambda self: self.catchups)
    @rule()
    def catch_up_ends(self) -> None:
        upto = self.catchups.pop(0)
        out = self.delivery.resume(upto, self.follows)
        if not self.catchups:
            assert out is not None
            self.received += out
            self.first_done = True
        else:
            assert out is None  # another catch-up still runs: everything stays held

    def _send_history(self, after: int, head: int, follows: frozenset[str] | None = None) -> None:
        want = follows if follows is not None else self.follows
        for seq, adw_id, addressed in self.log[after:head]:
            if addressed:
                continue  # replies are never replayed
            if want is None or adw_id is None or adw_id in want:
                self.received.append(_frame(seq, adw_id, addressed))
        self.sent_upto = max(self.sent_upto, head)

    # -- the promises ---------------------------------------------------------------

    @invariant()
    def nothing_twice(self) -> None:
        assert len(self.received) == len(set(self.received)), self.received

    @invariant()
    def every_reply_once_when_live(self) -> None:
        if self.catchups:
            return
        replies = {_frame(s, a, True) for s, a, r in self.log if r}
        got = {f for f in self.received if f.endswith(b":r")}
        if self.first_done:
            assert got == replies

    @invariant()
    def live_broadcasts_in_order_and_none_missed(self) -> None:
        if self.catchups or not self.first_done or self.follows is not None:
            return
        # Following everything, and live: every broadcast after the client's since,
        # each once, in seq order.
        broadcasts = [f for f in self.received if f.endswith(b":b")]
        seqs = [int(f.split(b":")[0]) for f in broadcasts]
        assert seqs == sorted(seqs)
        expected = [s for s, _a, r in self.log if not r and s > self.all_from]
        assert [s for s in seqs if s > self.all_from] == expected

    @invariant()
    def held_only_while_a_catch_up_runs(self) -> None:
        assert (self.delivery.held is not None) == bool(self.catchups or not self.first_done)


Connection.TestCase.settings = settings(max_examples=300, stateful_step_count=30, deadline=None)
test_delivery = Connection.TestCase


def test_an_unreadable_connection_wants_nothing_and_a_reader_only_what_it_follows() -> None:
    delivery = Delivery(readable=False, held=None, pauses=0)
    assert not delivery.wants("a")
    delivery.readable = True
    delivery.follows = frozenset({"a"})
    assert delivery.wants("a")
    assert not delivery.wants("b")
    assert delivery.wants(None)  # a broadcast about no run goes to every reader
    assert not delivery.wants("a", shown=False)  # outside the principal's scope


def test_held_frames_count_toward_the_outbound_limit() -> None:
    delivery = Delivery()
    assert not delivery.offer(1, b"x" * 600, "a", addressed=False)
    assert delivery.over(500, 1000)
    assert not delivery.over(400, 1000)
    delivery.drop()
    assert delivery.held_bytes == 0
