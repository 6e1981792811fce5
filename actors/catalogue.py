"""The workflow catalogue: how each workflow type is run.

Pure data and the one function that turns a catalogue entry and a run into
an argv, a working directory and an environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from msgspec import Struct

from adwd.events.errors import ConfigError

DEFAULT_WORKFLOW_TYPES = (
    "adw_plan_iso",
    "adw_build_iso",
    "adw_test_iso",
    "adw_review_iso",
    "adw_document_iso",
    "adw_ship_iso",
)
# The ADW convention: adws/<workflow_type>.py <issue_number> <adw_id>, run in the project.
DEFAULT_ARGV = ("{python}", "adws/{workflow_type}.py", "{issue_number}", "{adw_id}")
PLACEHOLDERS = ("python", "project_dir", "data_dir", "workflow_type", "issue_number", "adw_id")


class WorkflowSpec(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How one workflow type runs. Every string of argv, cwd and env may use
    the placeholders ``{python}``, ``{project_dir}``, ``{data_dir}``,
    ``{workflow_type}``, ``{issue_number}`` and ``{adw_id}``."""

    argv: tuple[str, ...] = DEFAULT_ARGV
    cwd: str = "{project_dir}"
    env: dict[str, str] = {}
    timeout_s: float = 3600.0
    max_concurrent: int = 0  # 0: only the service-wide limit applies
    enabled: bool = True


class LaunchPlan(Struct, frozen=True):
    """Everything needed to spawn one run."""

    argv: list[str]
    cwd: str
    env: dict[str, str]
    timeout_s: float
    logs_path: str
    work_dir: str
    trigger_file: str


def logs_path(data_dir: Path, adw_id: str, workflow_type: str) -> Path:
    """Where a run's stdout and stderr go: ``agents/<adw_id>/<workflow_type>/execution.log``."""
    return data_dir / "agents" / adw_id / workflow_type / "execution.log"


def check_template(name: str, spec: WorkflowSpec) -> None:
    """Fail early, at config load, on a placeholder the service does not know."""
    values = dict.fromkeys(PLACEHOLDERS, "x")
    for text in (*spec.argv, spec.cwd, *spec.env.values()):
        try:
            text.format_map(values)
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise ConfigError(
                f"workflows.{name}: bad placeholder in {text!r} ({exc!r}); "
                f"use only {{{'}, {'.join(PLACEHOLDERS)}}}."
            ) from exc
    if not spec.argv:
        raise ConfigError(f"workflows.{name}: argv is empty; give the command to run.")


def plan_launch(
    spec: WorkflowSpec,
    *,
    python: str,
    project_dir: Path,
    data_dir: Path,
    workflow_type: str,
    adw_id: str,
    issue_number: str,
    model_set: str,
    trigger_reason: str,
    base_env: Mapping[str, str] = os.environ,
) -> LaunchPlan:
    """Resolve a catalogue entry into the argv, cwd and environment of one run."""
    values = {
        "python": python,
        "project_dir": str(project_dir),
        "data_dir": str(data_dir),
        "workflow_type": workflow_type,
        "issue_number": issue_number,
        "adw_id": adw_id,
    }
    log = logs_path(data_dir, adw_id, workflow_type)
    trigger_file = log.parent / "trigger.json"
    work_dir = data_dir / "agents" / adw_id / "work"
    env = dict(base_env)
    env.update({k: v.format_map(values) for k, v in spec.env.items()})
    env.update(
        {
            "ADW_ID": adw_id,
            "ADW_WORKFLOW_TYPE": workflow_type,
            "ADW_ISSUE_NUMBER": issue_number,
            "ADW_MODEL_SET": model_set,
            "ADW_TRIGGER_REASON": trigger_reason,
            "ADW_WORK_DIR": str(work_dir),
            "ADW_LOGS_PATH": str(log),
            "ADW_TRIGGER_FILE": str(trigger_file),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return LaunchPlan(
        argv=[a.format_map(values) for a in spec.argv],
        cwd=spec.cwd.format_map(values),
        env=env,
        timeout_s=spec.timeout_s,
        logs_path=str(log),
        work_dir=str(work_dir),
        trigger_file=str(trigger_file),
    )
