"""Who owns each run, as the router keeps it for scoped principals (docs/security.md).

Pure: ``owners`` folds stored events, ``Router.seed`` merges them with what was
published live, both bounded to the newest ``MAX_RUNS`` adw_ids; ``granted``
finds a principal's runs through the indexes as ``within`` would one by one.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adwd.actors import owners as owners_module
from adwd.actors.auth import Principal, within
from adwd.actors.owners import owners
from adwd.actors.router import Router
from adwd.events.domain import RunQueued
from adwd.events.store import StoredEvent

BOUND = 5
Queued = tuple[str, str, str]  # adw_id, workflow_type, principal

queued = st.tuples(
    st.sampled_from([f"a{i}" for i in range(8)]),
    st.sampled_from(["adw_plan_iso", "adw_build_iso"]),
    st.sampled_from(["alice", "bob"]),
)


def stored(runs: list[Queued], first_seq: int = 1) -> list[StoredEvent]:
    return [
        StoredEvent(
            seq=first_seq + n,
            ts=0.0,
            stream=f"workflow:{adw_id}",
            type="run_queued",
            version=1,
            principal=owner,
            correlation_id="",
            event=RunQueued(adw_id=adw_id, workflow_type=kind, logs_path=""),
        )
        for n, (adw_id, kind, owner) in enumerate(runs)
    ]


def model(runs: list[Queued]) -> dict[str, tuple[str, str]]:
    """The latest run_queued of each adw_id; the BOUND adw_ids queued last, oldest first."""
    latest: dict[str, tuple[str, str]] = {}
    for adw_id, kind, owner in runs:
        latest.pop(adw_id, None)
        latest[adw_id] = (kind, owner)
    return dict(list(latest.items())[-BOUND:])


@pytest.fixture(autouse=True)
def small_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(owners_module, "MAX_RUNS", BOUND)


@given(st.lists(queued, max_size=30))
def test_owners_keeps_each_runs_latest_owner_within_the_bound(runs: list[Queued]) -> None:
    found = owners(stored(runs))
    assert list(found.items()) == list(model(runs).items())  # oldest first: next dropped


@given(st.lists(queued, max_size=20), st.lists(queued, max_size=20))
def test_seed_then_live_is_the_log_read_in_order(before: list[Queued], live: list[Queued]) -> None:
    """Published before the seed lands or not, the router ends with what reading
    every event in order gives (the live events are the newer)."""
    router = Router(max_outbound_bytes=2**20)
    router.publish(stored(live, first_seq=100))  # no connections: only remembered
    router.seed(owners(stored(before)))
    reader = Principal(user_id="alice", permissions=frozenset({"workflow:read"}))
    everything = model(before + live)
    own = Principal(user_id="alice", permissions=frozenset({"workflow:read"}), own_runs_only=True)
    adw_ids = {adw_id for adw_id, _, _ in before + live}
    assert {a for a in adw_ids if router.within(a, reader)} == set(everything)
    assert {a for a in adw_ids if router.within(a, own)} == {
        a for a, (_, o) in everything.items() if o == "alice"
    }


principals = st.builds(
    Principal,
    user_id=st.sampled_from(["alice", "bob", "carol"]),
    permissions=st.sampled_from(
        [frozenset({"workflow:read"}), frozenset({"admin"}), frozenset({"workflow:cancel"})]
    ),
    workflow_types=st.none() | st.frozensets(st.sampled_from(["adw_plan_iso", "adw_build_iso"])),
    own_runs_only=st.booleans(),
)


@given(st.lists(queued, max_size=30), principals)
def test_granted_is_within_for_each_run(runs: list[Queued], p: Principal) -> None:
    table = owners(stored(runs))
    expected = {adw_id for adw_id, run in table.items() if within(p, *run)}
    assert table.granted(p) == expected
