"""recovery_instructions' figures: a Beta posterior over the log's history,
and retry decisions, as pure functions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adwd.actors.admission import SchedulerState, decide_recover, missing_dependency
from adwd.actors.advice import PRIOR_OTHER, PRIOR_TRANSIENT, offer, success_probability
from adwd.actors.catalogue import DEFAULT_CATALOGUE, RetryPolicy
from adwd.actors.classify import CLASSES
from adwd.events.domain import DomainEvent, ErrorReported, RunCompleted, RunFailed, RunQueued
from adwd.events.store import StoredEvent
from adwd.events.wire import RecoverData
from adwd.projections.lineage import LineageProjection, Outcomes

CLASS_IDS = [c.id for c in CLASSES]


def _fold(events: list[DomainEvent]) -> LineageProjection:
    lineage = LineageProjection()
    for seq, event in enumerate(events, 1):
        lineage.apply(StoredEvent(seq, float(seq), "s", "t", 1, "system", "", event))
    return lineage


@given(
    error_class=st.sampled_from(CLASS_IDS),
    tried=st.integers(0, 500),
    data=st.data(),
)
def test_the_figure_is_a_probability_between_the_prior_and_the_observed_rate(
    error_class: str, tried: int, data: st.DataObject
) -> None:
    completed = data.draw(st.integers(0, tried))
    lineage = LineageProjection(outcomes={(error_class, "retry"): Outcomes(tried, completed)})
    p = success_probability(lineage, error_class, "retry")
    assert 0.0 <= p <= 1.0
    transient = next(c for c in CLASSES if c.id == error_class).transient
    prior = PRIOR_TRANSIENT if transient else PRIOR_OTHER
    if tried:
        rate = completed / tried
        assert min(prior, rate) - 1e-4 <= p <= max(prior, rate) + 1e-4
    else:
        assert p == prior


@given(
    error_class=st.sampled_from(CLASS_IDS),
    tried=st.integers(1, 200),
    data=st.data(),
)
def test_more_evidence_at_the_same_rate_moves_the_figure_toward_it(
    error_class: str, tried: int, data: st.DataObject
) -> None:
    completed = data.draw(st.integers(0, tried))
    rate = completed / tried
    few = LineageProjection(outcomes={(error_class, "retry"): Outcomes(tried, completed)})
    many = LineageProjection(outcomes={(error_class, "retry"): Outcomes(4 * tried, 4 * completed)})
    near = abs(success_probability(many, error_class, "retry") - rate)
    far = abs(success_probability(few, error_class, "retry") - rate)
    assert near <= far + 1e-4


def _history(outcomes: list[bool]) -> list[DomainEvent]:
    """Runs of adw_plan_iso that failed with exit_nonzero, each retried by the user;
    ``outcomes`` says whether each retry completed."""
    events: list[DomainEvent] = []
    for i, completed in enumerate(outcomes):
        adw_id = f"a{i}"
        first = RunQueued(adw_id=adw_id, workflow_type="adw_plan_iso", logs_path="/l")
        events += [
            first,
            RunFailed(adw_id=adw_id, workflow_type="adw_plan_iso", reason="exit 1", exit_code=1),
            ErrorReported(
                error_id=f"e{i}", category="workflow", severity="medium", description="d",
                suggested_actions=[], recovery_options=[], adw_id=adw_id,
                workflow_type="adw_plan_iso", error_class="workflow.exit_nonzero",
            ),
            RunQueued(
                adw_id=adw_id, workflow_type="adw_plan_iso", logs_path="/l", attempt=2,
                retry_of=f"e{i}", recovers_class="workflow.exit_nonzero", recovery="retry",
            ),
        ]  # fmt: skip
        if completed:
            events.append(
                RunCompleted(adw_id=adw_id, workflow_type="adw_plan_iso", duration_s=1.0 + i)
            )
        else:
            events.append(
                RunFailed(adw_id=adw_id, workflow_type="adw_plan_iso", reason="x", exit_code=1)
            )
    return events


@given(outcomes=st.lists(st.booleans(), max_size=30))
def test_the_figures_are_the_folds_of_the_log_and_the_same_however_it_is_folded(
    outcomes: list[bool],
) -> None:
    events = _history(outcomes)
    lineage = _fold(events)
    tally = lineage.outcomes.get(("workflow.exit_nonzero", "retry"), Outcomes())
    assert (tally.tried, tally.completed) == (len(outcomes), sum(outcomes))
    failure = lineage.failures[f"e{len(outcomes) - 1}"] if outcomes else None
    if failure is not None:
        live = offer(lineage, failure, resumable=False, resume_type="adw_orchestrator")
        again = offer(_fold(events), failure, resumable=False, resume_type="adw_orchestrator")
        assert live == again
        expected = round((2 * PRIOR_OTHER + sum(outcomes)) / (2 + len(outcomes)), 4)
        retry, heavy = live.options
        assert (retry["option"], retry["success_probability"]) == ("retry", expected)
        assert (retry["based_on"], heavy["based_on"]) == (len(outcomes), 0)
        # The recommendation is the option with the best odds; its figures are the top ones.
        best = max(live.options, key=lambda o: o["success_probability"])
        assert live.success_probability == best["success_probability"]


def test_estimated_time_is_the_median_of_the_completed_runs() -> None:
    lineage = _fold(_history([True, True, True]))  # durations 1, 2, 3
    failure = next(iter(lineage.failures.values()))
    assert offer(lineage, failure, resumable=False, resume_type="x").estimated_time == 2.0


@pytest.mark.parametrize(
    ("error_class", "attempt", "expected"),
    [
        ("system.spawn", 1, 1.0),
        ("system.spawn", 2, 2.0),
        ("system.spawn", 3, None),  # maximum_attempts 3, the first run included
        ("workflow.exit_nonzero", 1, None),
        ("workflow.timeout", 1, None),
        ("system.interrupted", 1, None),
        ("workflow.heartbeat_lost", 1, 1.0),
    ],
)
def test_the_default_retry_policy(error_class: str, attempt: int, expected: float | None) -> None:
    assert RetryPolicy().retry_in(error_class, attempt) == expected


def test_backoff_is_capped_and_non_retryable_wins() -> None:
    policy = RetryPolicy(initial_interval_s=10, backoff_coefficient=3, maximum_interval_s=50,
                         maximum_attempts=0, non_retryable=("system.killed",))  # fmt: skip
    assert [policy.retry_in("system.spawn", n) for n in (1, 2, 3)] == [10, 30, 50]
    assert policy.retry_in("system.killed", 1) is None


def test_dependencies_are_read_from_the_fold() -> None:
    build = DEFAULT_CATALOGUE["adw_build_iso"]
    empty = LineageProjection()
    assert missing_dependency(build, "adw_build_iso", None, empty) is not None
    assert missing_dependency(build, "adw_build_iso", "a0", empty) is not None
    failed = _fold(_history([False]))  # a0's plan failed twice
    why = missing_dependency(build, "adw_build_iso", "a0", failed)
    assert why is not None
    assert why[1]["missing"] == ["plan"]
    done = _fold(_history([True]))
    assert missing_dependency(build, "adw_build_iso", "a0", done) is None
    assert missing_dependency(DEFAULT_CATALOGUE["adw_plan_iso"], "p", None, empty) is None


def test_a_recovery_is_linked_to_its_failure() -> None:
    lineage = _fold(_history([False]))
    heavy = decide_recover(
        RecoverData(option="retry_heavy", adw_id="a0"),
        lineage=lineage,
        state=SchedulerState(),
        catalogue=DEFAULT_CATALOGUE,
        connection_id="c",
        request_id="r",
        now=5.0,
    )
    assert isinstance(heavy, RunQueued)
    assert (heavy.model_set, heavy.recovery, heavy.attempt) == ("heavy", "retry_heavy", 2)
    assert heavy.retry_of == "e0"


def test_an_error_class_can_have_its_own_policy() -> None:
    from adwd.actors.lifecycle import Ended, RunLifecycle

    def failed_by_kill(**kw: object) -> Ended:
        run = RunLifecycle(adw_id="a", workflow_type="t", **kw)  # type: ignore[arg-type]
        run.spawned(pid=1, argv=["x"], cwd="/", proc_start=1, now=0.0)
        ended = [o for o in run.exited(-9, None, 1.0) if isinstance(o, Ended)]
        return ended[0]

    slow = RetryPolicy(initial_interval_s=30.0)
    assert failed_by_kill(retry=RetryPolicy()).retry_in_s == 1.0
    assert (
        failed_by_kill(retry=RetryPolicy(), retry_classes={"system.killed": slow}).retry_in_s
        == 30.0
    )
    never = RetryPolicy(maximum_attempts=1)
    assert (
        failed_by_kill(retry=RetryPolicy(), retry_classes={"system.killed": never}).retry_in_s
        is None
    )
