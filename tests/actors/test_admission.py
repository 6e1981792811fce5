"""Scheduler decisions: admit, deduplicate or reject a trigger; which waiting runs start."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adwd.actors.admission import (
    RequestMemory,
    RunKey,
    SchedulerState,
    authorise_update,
    decide_cancel,
    decide_trigger,
    runs_to_start,
)
from adwd.actors.catalogue import WorkflowSpec
from adwd.events.domain import RunQueued, TriggerDeduplicated, TriggerRejected
from adwd.events.domain import RunQueued as _Queued
from adwd.events.errors import ErrorCode
from adwd.events.wire import TriggerWorkflowData

DATA = Path("/data")
CATALOGUE = {"plan": WorkflowSpec(), "build": WorkflowSpec(max_concurrent=1)}


def _decide(
    state: SchedulerState, max_queue: int = 10, **trigger: object
) -> RunQueued | TriggerDeduplicated | TriggerRejected:
    return decide_trigger(
        state,
        TriggerWorkflowData(**trigger),  # type: ignore[arg-type]
        catalogue=CATALOGUE,
        data_dir=DATA,
        max_queue=max_queue,
        connection_id="c1",
        new_adw_id="generated",
    )


def _queued(adw_id: str, workflow_type: str = "plan") -> RunQueued:
    return RunQueued(adw_id=adw_id, workflow_type=workflow_type, logs_path=f"/logs/{adw_id}")


def test_accepted_trigger_is_queued_with_its_request() -> None:
    event = _decide(
        SchedulerState(),
        workflow_type="plan",
        adw_id="a1",
        issue_number=42,
        model_set="heavy",
        stages=["plan"],
        issue_json={"title": "t"},
    )
    assert isinstance(event, RunQueued)
    assert (event.adw_id, event.workflow_type, event.issue_number) == ("a1", "plan", "42")
    assert event.logs_path == str(DATA / "agents" / "a1" / "plan" / "execution.log")
    assert (event.model_set, event.stages, event.issue_json) == ("heavy", ["plan"], {"title": "t"})
    assert (event.trigger_reason, event.connection_id) == ("", "c1")


@pytest.mark.parametrize("adw_id", [None, ""])
def test_missing_adw_id_gets_the_generated_one(adw_id: str | None) -> None:
    event = _decide(SchedulerState(), workflow_type="plan", adw_id=adw_id)
    assert isinstance(event, RunQueued)
    assert event.adw_id == "generated"


def test_unknown_workflow_type_is_rejected_naming_the_allowed_ones() -> None:
    event = _decide(SchedulerState(), workflow_type="deploy", adw_id="a1")
    assert isinstance(event, TriggerRejected)
    assert event.error == ErrorCode.VALIDATION_ERROR
    assert event.details == {"field": "data.workflow_type", "allowed": ["build", "plan"]}
    assert "deploy" in event.message


def test_repeated_trigger_is_deduplicated_with_the_first_logs_path() -> None:
    state = SchedulerState()
    state.enqueue(_queued("a1"))
    event = _decide(state, workflow_type="plan", adw_id="a1")
    assert event == TriggerDeduplicated(
        adw_id="a1", workflow_type="plan", logs_path="/logs/a1", connection_id="c1"
    )
    other = _decide(state, workflow_type="build", adw_id="a1")
    assert isinstance(other, RunQueued)


def test_full_queue_rejects_new_runs_but_still_deduplicates() -> None:
    state = SchedulerState()
    state.enqueue(_queued("a1"))
    state.enqueue(_queued("a2"))
    rejected = _decide(state, max_queue=2, workflow_type="plan", adw_id="a3")
    assert isinstance(rejected, TriggerRejected)
    assert rejected.error == ErrorCode.UNAVAILABLE
    assert rejected.details == {"queue_length": 2, "max_queue": 2}
    assert isinstance(_decide(state, max_queue=2, workflow_type="plan", adw_id="a2"),
                      TriggerDeduplicated)  # fmt: skip


def test_state_moves_runs_from_queue_to_running_to_gone() -> None:
    state = SchedulerState()
    state.enqueue(_queued("a1"))
    state.enqueue(_queued("a2"))
    state.start(("a1", "plan"))
    assert (list(state.queue), state.running) == ([("a2", "plan")], {("a1", "plan")})
    state.finish(("a1", "plan"))
    state.finish(("a2", "plan"))  # cancelled while waiting
    assert (list(state.queue), state.running, state.active) == ([], set(), {})


def test_same_adw_id_waits_and_keeps_its_place() -> None:
    state = SchedulerState()
    for key in [("a", "plan"), ("a", "build"), ("b", "plan")]:
        state.enqueue(_queued(*key))
    assert runs_to_start(state, catalogue=CATALOGUE, max_concurrent=5) == [
        ("a", "plan"),
        ("b", "plan"),
    ]
    state.start(("a", "plan"))
    state.start(("b", "plan"))
    state.finish(("a", "plan"))
    assert runs_to_start(state, catalogue=CATALOGUE, max_concurrent=5) == [("a", "build")]


ADW_IDS = ["a", "b", "c", "d"]
TYPES = ["plan", "build", "test"]


def _startable(key: RunKey, occupied: list[RunKey], catalogue: dict[str, WorkflowSpec],
               max_concurrent: int) -> bool:  # fmt: skip
    limit = catalogue[key[1]].max_concurrent
    return (
        len(occupied) < max_concurrent
        and all(r[0] != key[0] for r in occupied)
        and (not limit or sum(r[1] == key[1] for r in occupied) < limit)
    )


@st.composite
def scheduler_states(draw: st.DrawFn) -> tuple[SchedulerState, dict[str, WorkflowSpec], int]:
    """A reachable state: what runs already respects every limit."""
    catalogue = {t: WorkflowSpec(max_concurrent=draw(st.sampled_from([0, 1, 2]))) for t in TYPES}
    max_concurrent = draw(st.integers(1, 4), label="max_concurrent")
    keys = st.tuples(st.sampled_from(ADW_IDS), st.sampled_from(TYPES))
    running: list[RunKey] = []
    for key in draw(st.lists(keys, max_size=max_concurrent), label="running"):
        if _startable(key, running, catalogue, max_concurrent):
            running.append(key)
    waiting = draw(st.lists(keys.filter(lambda k: k not in running), unique=True), label="queue")
    state = SchedulerState()
    for key in waiting:
        state.enqueue(_queued(*key))
    for key in running:
        state.active[key] = _queued(*key)
        state.running.add(key)
    return state, catalogue, max_concurrent


@settings(max_examples=300, deadline=None)
@given(scheduler_states())
def test_runs_to_start_respects_every_limit_and_fifo(
    drawn: tuple[SchedulerState, dict[str, WorkflowSpec], int],
) -> None:
    state, catalogue, max_concurrent = drawn
    chosen = runs_to_start(state, catalogue=catalogue, max_concurrent=max_concurrent)
    after = [*state.running, *chosen]

    assert len(after) <= max_concurrent
    assert len({k[0] for k in after}) == len(after), "two runs of one adw_id"
    for workflow_type, spec in catalogue.items():
        if spec.max_concurrent:
            assert sum(k[1] == workflow_type for k in after) <= spec.max_concurrent
    queue = list(state.queue)
    assert chosen == [k for k in queue if k in chosen], "FIFO order"
    # Greedy in FIFO order: every waiting run is started exactly when it can be.
    occupied = list(state.running)
    for key in queue:
        can = _startable(key, occupied, catalogue, max_concurrent)
        assert (key in chosen) == can, key
        if can:
            occupied.append(key)


# -- cancel, request memory, update authorisation ---------------------------------


_keys = st.tuples(st.sampled_from(["a1", "a2", "a3"]), st.sampled_from(["t1", "t2"]))


@settings(max_examples=200, deadline=None)
@given(active=st.sets(_keys), running_share=st.data(), target=st.sampled_from(["a1", "a2", "zz"]))
def test_a_cancel_takes_every_active_run_of_the_adw_id_and_nothing_else(
    active: set[tuple[str, str]], running_share: st.DataObject, target: str
) -> None:
    state = SchedulerState()
    for adw_id, wt in sorted(active):
        state.enqueue(_Queued(adw_id=adw_id, workflow_type=wt, logs_path="/l"))
    for key in running_share.draw(st.sets(st.sampled_from(sorted(active)))) if active else ():
        state.start(key)
    decision = decide_cancel(state, target)
    mine = {k for k in active if k[0] == target}
    assert set(decision.running) | set(decision.waiting) == mine
    assert set(decision.running) == mine & state.running
    assert not set(decision.running) & set(decision.waiting)
    assert decision.outcome == ("cancelling" if mine else "not_found")


@settings(max_examples=200, deadline=None)
@given(ids=st.lists(st.sampled_from([None, "r1", "r2", "r3", "r4", "r5"]), max_size=30))
def test_request_memory_answers_the_last_decision_of_each_id_within_its_size(
    ids: list[str | None],
) -> None:
    memory = RequestMemory(3)
    latest: dict[str, int] = {}
    for n, rid in enumerate(ids):
        memory.remember(rid, _Queued(adw_id=f"x{n}", workflow_type="t", logs_path="/l"))
        if rid is not None:
            latest.pop(rid, None)
            latest[rid] = n
    assert len(memory) == min(3, len(latest))
    for rid, n in list(latest.items())[-3:]:
        earlier = memory.earlier(rid)
        assert earlier is not None
        assert earlier.adw_id == f"x{n}"
    assert memory.earlier(None) is None


@settings(max_examples=300, deadline=None)
@given(
    running=st.sets(_keys),
    adw_id=st.sampled_from(["a1", "a2", "zz"]),
    token=st.none() | st.sampled_from(["tok-a1-t1", "tok-a2-t2", "wrong", ""]),
    local=st.booleans(),
)
def test_an_update_reaches_a_run_only_with_its_token_or_from_loopback(
    running: set[tuple[str, str]], adw_id: str, token: str | None, local: bool
) -> None:
    tokens = {key: f"tok-{key[0]}-{key[1]}" for key in running}
    verdict, key = authorise_update(sorted(running), tokens, adw_id, token, local=local)
    mine = sorted(k for k in running if k[0] == adw_id)
    if not mine:
        assert (verdict, key) == ("not_found", None)
    elif local or token == tokens[mine[0]]:
        assert (verdict, key) == ("accepted", mine[0])
    else:
        assert (verdict, key) == ("forbidden", None)


def test_an_attempt_gets_what_is_left_of_its_runs_schedule_to_close() -> None:
    from adwd.actors.admission import attempt_timeout
    from adwd.events.domain import RunQueued

    run = RunQueued(adw_id="a", workflow_type="t", logs_path="/l", first_queued=100.0)
    assert attempt_timeout(WorkflowSpec(start_to_close_s=60), run, 130.0) == 60
    both = WorkflowSpec(start_to_close_s=60, schedule_to_close_s=50)
    assert attempt_timeout(both, run, 130.0) == 20  # 100 + 50 - 130
    assert attempt_timeout(both, run, 150.0) is None  # ran out while it waited
    no_own = WorkflowSpec(start_to_close_s=0, schedule_to_close_s=50)
    assert attempt_timeout(no_own, run, 110.0) == 40


def test_a_card_move_triggers_its_stages_workflow_or_says_none_is_configured() -> None:
    from adwd.actors.admission import card_move_key, card_move_trigger
    from adwd.events.domain import TriggerRejected
    from adwd.events.wire import CardMovedData, TriggerWorkflowData

    moved = CardMovedData(card_id="9", to_stage="plan", adw_id="x1", issue_number="3")
    got = card_move_trigger(
        moved, stage_triggers={"plan": "plan"}, catalogue=CATALOGUE,
        connection_id="c", request_id="r",
    )  # fmt: skip
    assert isinstance(got, TriggerWorkflowData)
    assert (got.workflow_type, got.adw_id, got.issue_number) == ("plan", "x1", "3")
    nowhere = card_move_trigger(
        CardMovedData(card_id="9", to_stage="pr"), stage_triggers={"plan": "plan"},
        catalogue=CATALOGUE, connection_id="c", request_id="r",
    )  # fmt: skip
    assert isinstance(nowhere, TriggerRejected)
    assert "stage 'pr'" in nowhere.message
    assert (
        card_move_key(moved)
        == card_move_key(moved)
        != card_move_key(CardMovedData(card_id="9", to_stage="build"))
    )
