"""The ADW state adwd writes before a launch: what the scripts' loader reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adwd.actors.adwstate import (
    DEFAULTS,
    merged_state,
    read_state,
    state_path,
    write_state,
)
from adwd.events.domain import RunQueued

CARD = {"title": "Add dark mode", "description": "a toggle", "stage": "backlog"}


def _run(**fields: Any) -> RunQueued:
    return RunQueued(
        adw_id=fields.pop("adw_id", "a1b2c3d4"),
        workflow_type=fields.pop("workflow_type", "adw_plan_iso"),
        logs_path="x",
        **fields,
    )


def loads_like_the_scripts(state: dict[str, Any]) -> bool:
    """What ADWStateData (pydantic) of the ADW scripts accepts, field by field."""
    return (
        isinstance(state.get("adw_id"), str)
        and state["adw_id"] != ""
        and (state.get("issue_number") is None or isinstance(state["issue_number"], str))
        and state.get("issue_class") in (None, "/chore", "/bug", "/feature")
        and state.get("model_set") in (None, "base", "heavy")
        and state.get("data_source") in (None, "github", "kanban")
        and (state.get("issue_json") is None or isinstance(state["issue_json"], dict))
        and isinstance(state.get("all_adws", []), list)
    )


def test_a_board_card_runs_in_kanban_mode() -> None:
    state, changed = merged_state(_run(issue_json=CARD, issue_type="feature"), None)
    assert state == {
        **DEFAULTS,
        "adw_id": "a1b2c3d4",
        "issue_number": None,
        "issue_class": "/feature",
        "issue_json": CARD,
        "data_source": "kanban",
    }
    assert set(changed) == {
        "adw_id", "model_set", "issue_number", "issue_class", "issue_json", "data_source"
    }  # fmt: skip
    assert loads_like_the_scripts(state)


def test_an_issue_type_alone_is_kanban_too() -> None:
    state, _ = merged_state(_run(issue_type="bug", issue_number="12"), None)
    assert (state["data_source"], state["issue_class"], state["issue_json"]) == (
        "kanban",
        "/bug",
        None,
    )
    assert state["issue_number"] == "12"


def test_a_github_issue() -> None:
    state, _ = merged_state(_run(issue_number="42", model_set="heavy"), None)
    assert (state["data_source"], state["issue_number"], state["model_set"]) == (
        "github",
        "42",
        "heavy",
    )
    assert state["issue_class"] is None


def test_an_issue_type_the_scripts_do_not_know_is_not_written() -> None:
    state, _ = merged_state(_run(issue_type="patch"), None)
    assert state["issue_class"] is None
    assert state["data_source"] == "kanban"
    assert loads_like_the_scripts(state)


def test_a_dependent_workflow_updates_rather_than_replaces() -> None:
    plan, _ = merged_state(_run(issue_json=CARD, issue_number="7"), None)
    plan |= {"branch_name": "feat-7", "worktree_path": "/trees/a1", "custom": 1}
    build, changed = merged_state(_run(workflow_type="adw_build_iso", model_set="heavy"), plan)
    # What the plan stored stays; only what the build trigger said changed.
    assert build == {**plan, "model_set": "heavy"}
    assert changed == ["model_set"]


def test_an_update_with_a_new_card_replaces_it() -> None:
    old, _ = merged_state(_run(issue_number="7"), None)
    new, changed = merged_state(_run(issue_json=CARD), old)
    assert (new["data_source"], new["issue_json"], new["issue_number"]) == ("kanban", CARD, "7")
    assert set(changed) == {"issue_json", "data_source"}


# Slow generation on a shared 2-core machine is not what this test is about.
@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    issue_type=st.one_of(st.none(), st.sampled_from(["feature", "bug", "chore", "patch", "X"])),
    issue_json=st.one_of(st.none(), st.just(CARD)),
    issue_number=st.sampled_from(["", "1", "abc"]),
    existing=st.one_of(
        st.none(),
        st.fixed_dictionaries(
            {"adw_id": st.just("a1b2c3d4")},
            optional={
                "data_source": st.sampled_from(["github", "kanban", "bogus"]),
                "branch_name": st.text(max_size=5),
                "issue_number": st.sampled_from(["9", None]),
            },
        ),
    ),
)
def test_whatever_was_sent_the_scripts_can_load_it(
    issue_type: str | None,
    issue_json: dict[str, Any] | None,
    issue_number: str,
    existing: dict[str, Any] | None,
) -> None:
    run = _run(issue_type=issue_type, issue_json=issue_json, issue_number=issue_number)
    state, changed = merged_state(run, existing)
    assert loads_like_the_scripts(state)
    assert state["adw_id"] == run.adw_id
    if issue_json is not None or issue_type:
        assert state["data_source"] == "kanban"
    if existing is not None:
        # Nothing the trigger did not speak about was touched.
        for key, value in existing.items():
            if key not in changed:
                assert state[key] == value


def test_the_file_round_trips_and_bad_files_read_as_none(tmp_path: Path) -> None:
    path = state_path(tmp_path, "a1")
    assert path == tmp_path / "agents" / "a1" / "adw_state.json"
    assert read_state(path) is None
    write_state(path, {"adw_id": "a1", "issue_json": CARD})
    assert read_state(path) == {"adw_id": "a1", "issue_json": CARD}
    assert [p.name for p in path.parent.iterdir()] == ["adw_state.json"]  # no temporary left
    path.write_text("[1, 2]")
    assert read_state(path) is None
    path.write_text("{not json")
    assert read_state(path) is None
