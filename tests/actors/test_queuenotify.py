"""Queue position changes, at most one per run per interval, the latest winning."""

from __future__ import annotations

import itertools

from hypothesis import example, given
from hypothesis import strategies as st

from adwd.actors.queuenotify import RunKey, Sent, queue_changes


def _queue(*adw_ids: str) -> list[RunKey]:
    return [(a, "t") for a in adw_ids]


def _told(changes_send: list[tuple[RunKey, int]]) -> dict[str, int]:
    return {key[0]: position for key, position in changes_send}


def test_new_runs_are_told_at_once_and_a_quick_move_waits() -> None:
    first = queue_changes(_queue("a", "b", "c"), {}, now=10.0, interval=1.0)
    assert _told(first.send) == {"a": 1, "b": 2, "c": 3}
    assert first.wake_at is None
    # a starts 0.2 s later: b and c move up, but were told 0.2 s ago.
    moved = queue_changes(_queue("b", "c"), first.sent, now=10.2, interval=1.0)
    assert moved.send == []
    assert moved.wake_at == 11.0
    assert set(moved.sent) == {("b", "t"), ("c", "t")}  # a left: forgotten
    # b starts too before the interval ends; at 11.0 c hears only where it is then.
    later = queue_changes(_queue("c"), moved.sent, now=11.0, interval=1.0)
    assert _told(later.send) == {"c": 1}
    assert later.wake_at is None


def test_an_unchanged_position_is_never_sent_again() -> None:
    first = queue_changes(_queue("a", "b"), {}, now=0.0, interval=1.0)
    again = queue_changes(_queue("a", "b"), first.sent, now=50.0, interval=1.0)
    assert again.send == []
    assert again.sent == first.sent


def test_interval_zero_sends_every_change() -> None:
    sent: dict[tuple[str, str], Sent] = {}
    for i, queue in enumerate((("a", "b", "c"), ("b", "c"), ("c",))):
        changes = queue_changes(_queue(*queue), sent, now=float(i) * 1e-6, interval=0.0)
        assert _told(changes.send) == {a: p for p, a in enumerate(queue, 1)}
        sent = changes.sent


@example(  # a float edge: the quiet interval ends exactly when the last move is due
    [(list("abcdef"), 1, 0.0), (list("abcdef"), 1, 3.0), (list("abcdef"), 1, 1.9304621836440328),
     (list("abcdef"), 1, 1.166698315797265), (list("abcdef"), 1, 1.0572459506928957),
     (list("acbdef"), 3, 0.5), (list("abcdef"), 2, 0.0)],
    0.5,
)  # fmt: skip
@given(
    st.lists(
        st.tuples(st.permutations("abcdef"), st.integers(1, 6), st.floats(0, 3)),
        min_size=1,
        max_size=30,
    ),
    st.sampled_from([0.0, 0.5, 1.0]),
)
def test_last_told_is_the_position_once_quiet(
    steps: list[tuple[list[str], int, float]], interval: float
) -> None:
    """Whatever the moves and their timing, after a quiet interval every waiting run's
    connection has been told its current position, and no run was told twice within
    an interval while it stayed in the queue."""
    sent: dict[tuple[str, str], Sent] = {}
    told_at: dict[str, list[float]] = {}
    now = 0.0
    queue: list[str] = []
    for order, length, gap in steps:
        now += gap
        queue = list(order)[:length]
        told_at = {a: t for a, t in told_at.items() if a in queue}  # left: a new run if back
        changes = queue_changes(_queue(*queue), sent, now, interval)
        for (adw_id, _), _position in changes.send:
            told_at.setdefault(adw_id, []).append(now)
        sent = changes.sent
    now += interval
    changes = queue_changes(_queue(*queue), sent, now, interval)
    assert changes.wake_at is None
    final = changes.sent
    assert {k[0]: v.position for k, v in final.items()} == {a: i for i, a in enumerate(queue, 1)}
    for times in told_at.values():
        assert all(b - a >= interval for a, b in itertools.pairwise(times))
