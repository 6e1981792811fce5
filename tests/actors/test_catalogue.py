"""Workflow catalogue: argv templates, launch plans and template checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adwd.actors.catalogue import (
    DEFAULT_ARGV,
    PLACEHOLDERS,
    LaunchPlan,
    WorkflowSpec,
    check_template,
    logs_path,
    plan_launch,
)
from adwd.events.errors import ConfigError

PROJECT = Path("/proj")
DATA = Path("/data")


def _plan(spec: WorkflowSpec, base_env: dict[str, str] | None = None) -> LaunchPlan:
    return plan_launch(
        spec,
        python="/usr/bin/python3",
        project_dir=PROJECT,
        data_dir=DATA,
        workflow_type="adw_plan_iso",
        adw_id="abc123",
        issue_number="42",
        model_set="heavy",
        trigger_reason="card moved",
        base_env={} if base_env is None else base_env,
    )


def test_logs_path_layout() -> None:
    assert logs_path(DATA, "a1", "w") == DATA / "agents" / "a1" / "w" / "execution.log"


def test_default_spec_follows_the_adw_convention() -> None:
    plan = _plan(WorkflowSpec())
    assert plan.argv == ["/usr/bin/python3", "adws/adw_plan_iso.py", "42", "abc123"]
    assert plan.cwd == str(PROJECT)
    assert plan.timeout_s == 3600.0
    log = DATA / "agents" / "abc123" / "adw_plan_iso" / "execution.log"
    assert plan.logs_path == str(log)
    assert plan.trigger_file == str(log.parent / "trigger.json")
    assert plan.work_dir == str(DATA / "agents" / "abc123" / "work")


def test_every_placeholder_is_substituted_in_argv_cwd_and_env() -> None:
    spec = WorkflowSpec(
        argv=("{python}", "-m", "x", "--p={project_dir}", "{data_dir}/{workflow_type}"),
        cwd="{data_dir}/agents/{adw_id}",
        env={"ISSUE": "#{issue_number}", "LITERAL": "{{not a placeholder}}"},
        timeout_s=5.0,
    )
    plan = _plan(spec)
    assert plan.argv == ["/usr/bin/python3", "-m", "x", "--p=/proj", "/data/adw_plan_iso"]
    assert plan.cwd == "/data/agents/abc123"
    assert (plan.env["ISSUE"], plan.env["LITERAL"]) == ("#42", "{not a placeholder}")
    assert plan.timeout_s == 5.0


def test_environment_layers_base_then_spec_then_adw_variables() -> None:
    base = {"PATH": "/bin", "ADW_ID": "stale", "KEEP": "base", "OVERRIDE": "base"}
    spec = WorkflowSpec(env={"OVERRIDE": "spec", "ADW_MODEL_SET": "spec"})
    plan = _plan(spec, base)
    assert plan.env["PATH"] == "/bin"
    assert plan.env["KEEP"] == "base"
    assert plan.env["OVERRIDE"] == "spec"
    assert plan.env["ADW_ID"] == "abc123"
    assert plan.env["ADW_MODEL_SET"] == "heavy"
    assert plan.env["ADW_WORKFLOW_TYPE"] == "adw_plan_iso"
    assert plan.env["ADW_ISSUE_NUMBER"] == "42"
    assert plan.env["ADW_TRIGGER_REASON"] == "card moved"
    assert plan.env["ADW_LOGS_PATH"] == plan.logs_path
    assert plan.env["ADW_WORK_DIR"] == plan.work_dir
    assert plan.env["ADW_TRIGGER_FILE"] == plan.trigger_file
    assert plan.env["PYTHONUNBUFFERED"] == "1"
    assert base == {"PATH": "/bin", "ADW_ID": "stale", "KEEP": "base", "OVERRIDE": "base"}


literal_text = st.text(max_size=20).filter(lambda s: "{" not in s and "}" not in s)


@given(argv=st.lists(literal_text, min_size=1, max_size=5), cwd=literal_text)
def test_text_without_braces_passes_through_unchanged(argv: list[str], cwd: str) -> None:
    spec = WorkflowSpec(argv=tuple(argv), cwd=cwd)
    check_template("w", spec)
    plan = _plan(spec)
    assert (plan.argv, plan.cwd) == (argv, cwd)


@given(names=st.lists(st.sampled_from(PLACEHOLDERS), min_size=1, max_size=6))
def test_known_placeholders_always_pass_the_check(names: list[str]) -> None:
    check_template("w", WorkflowSpec(argv=tuple(f"{{{n}}}" for n in names)))


def test_default_spec_passes_the_check() -> None:
    check_template("w", WorkflowSpec())
    assert WorkflowSpec().argv == DEFAULT_ARGV


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        (WorkflowSpec(argv=("{python}", "{script}")), "{script}"),
        (WorkflowSpec(argv=("run", "{}")), "{}"),
        (WorkflowSpec(argv=("run", "{0}")), "{0}"),
        (WorkflowSpec(argv=("run", "{python")), "{python"),
        (WorkflowSpec(argv=("run", "python}")), "python}"),
        (WorkflowSpec(argv=("run", "{python[9]}")), "{python[9]}"),
        (WorkflowSpec(cwd="{home}"), "{home}"),
        (WorkflowSpec(env={"X": "{token}"}), "{token}"),
    ],
)
def test_bad_placeholder_is_a_config_error_naming_the_text(
    spec: WorkflowSpec, fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        check_template("mine", spec)
    message = str(info.value)
    assert message.startswith("workflows.mine: bad placeholder")
    assert fragment in message
    assert "{python}, {project_dir}" in message


def test_empty_argv_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"workflows\.mine: argv is empty"):
        check_template("mine", WorkflowSpec(argv=()))


def test_attribute_placeholder_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        check_template("mine", WorkflowSpec(argv=("{python.version}",)))
