"""The alert state machine: pending for for_s, firing, kept firing, resolved once."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adwd.actors.alerts import AlertBook, AlertMachine, AlertRule, Fired, Phase, Resolved

RULE = AlertRule(
    name="queue_age", component="scheduler", raise_at=10, clear_at=5, for_s=3, keep_firing_for_s=2
)


def _ids() -> itertools.count[int]:
    return itertools.count(1)


def _feed(rule: AlertRule, samples: list[tuple[float, float | None]]) -> list[Fired | Resolved]:
    machine, ids = AlertMachine(rule), _ids()
    out = []
    for now, value in samples:
        done = machine.observe(now, value, lambda: f"a{next(ids)}")
        if done is not None:
            out.append(done)
    return out


def test_pending_then_firing_then_kept_then_resolved() -> None:
    got = _feed(
        RULE, [(0, 12), (1, 12), (2.9, 15), (3, 11), (4, 7), (5, 4), (6, 6), (7, 4), (9, 0)]
    )
    assert [(type(t).__name__, t.at) for t in got] == [("Fired", 3), ("Resolved", 9)]
    assert got[0].alert_id == got[1].alert_id == "a1"
    assert isinstance(got[1], Resolved)
    assert got[1].fired_at == 3


def test_a_condition_that_stops_while_pending_never_fires() -> None:
    assert _feed(RULE, [(0, 12), (2, 12), (2.5, 9), (4, 12), (6.9, 12)]) == []


def test_a_low_value_rule_fires_below_and_clears_above() -> None:
    disk = AlertRule(name="disk", component="event_log", raise_at=100, clear_at=200, above=False)
    got = _feed(disk, [(0, 500), (1, 90), (2, 150), (3, 201)])
    assert [(type(t).__name__, t.at) for t in got] == [("Fired", 1), ("Resolved", 3)]


def test_unmeasured_values_never_raise() -> None:
    assert _feed(RULE, [(float(t), None) for t in range(10)]) == []


def test_thresholds_that_could_never_resolve_are_refused() -> None:
    with pytest.raises(ValueError, match="clear_at 20"):
        AlertRule(name="x", component="y", raise_at=10, clear_at=20)


def test_the_book_keeps_one_machine_per_rule() -> None:
    fast = AlertRule(name="conns", component="transport", raise_at=2)
    book = AlertBook({"conns": fast, "queue_age": RULE}, lambda name: f"{name}-1")
    assert [t.alert_id for t in book.observe(0.0, {"conns": 3, "queue_age": 11})] == ["conns-1"]
    assert book.firing() == [fast]
    assert book.phases() == {"conns": Phase.FIRING, "queue_age": Phase.PENDING}


rules = st.builds(
    lambda raise_at, gap, for_s, keep: AlertRule(
        name="r", component="c", raise_at=raise_at, clear_at=raise_at - gap, for_s=for_s,
        keep_firing_for_s=keep,
    ),
    st.integers(0, 10),
    st.integers(0, 5),
    st.sampled_from([0.0, 0.5, 1.0, 2.5]),
    st.sampled_from([0.0, 0.5, 1.0, 2.5]),
)  # fmt: skip
steps = st.lists(
    st.tuples(st.sampled_from([0.0, 0.25, 0.5, 1.0, 1.5]), st.none() | st.integers(-2, 14)),
    max_size=80,
)


@given(rules, steps)
def test_fires_only_after_for_s_and_resolves_only_after_keep_firing_for_s(
    rule: AlertRule, deltas: list[tuple[float, int | None]]
) -> None:
    samples: list[tuple[float, float | None]] = []
    now = 0.0
    for dt, value in deltas:
        now += dt
        samples.append((now, None if value is None else float(value)))
    machine, ids = AlertMachine(rule), _ids()
    firing = False
    run_start: float | None = None  # of the current run of samples that keep the phase going
    for now, value in samples:
        done = machine.observe(now, value, lambda: f"a{next(ids)}")
        if not firing:
            run_start = (
                (run_start if run_start is not None else now) if rule.breaches(value) else None
            )
            if run_start is not None and now - run_start >= rule.for_s:
                # The condition held for for_s: it must fire now, exactly once.
                assert isinstance(done, Fired), (now, value)
                firing, run_start = True, None
            else:
                assert done is None  # never before for_s; never two fires without a resolve
        else:
            run_start = None if rule.holds(value) else (run_start if run_start is not None else now)
            if run_start is not None and now - run_start >= rule.keep_firing_for_s:
                assert isinstance(done, Resolved), (now, value)
                firing, run_start = False, None
            else:
                assert done is None  # firing until clear for keep_firing_for_s; one resolve
        assert (machine.phase is Phase.FIRING) == firing
