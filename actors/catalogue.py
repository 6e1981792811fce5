"""The workflow catalogue: how each workflow type is run.

Pure data and the one function that turns a catalogue entry and a run into
an argv, a working directory and an environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from msgspec import Meta, Struct, json

from adwd.events.errors import ConfigError
from adwd.projections.stages import STAGES, next_stage

# The ADW convention: adws/<workflow_type>.py <issue_number> <adw_id>, run in the project.
DEFAULT_ARGV = ("{python}", "adws/{workflow_type}.py", "{issue_number}", "{adw_id}")
# adw_merge_iso takes only the adw_id (adws/adw_merge_iso.py <adw_id> [merge-method]).
MERGE_ARGV = ("{python}", "adws/{workflow_type}.py", "{adw_id}")
PLACEHOLDERS = ("python", "project_dir", "data_dir", "workflow_type", "issue_number", "adw_id")
# The transient classes (actors/classify.py): nothing in the workflow to fix, worth a
# retry. Not system.interrupted: a run cut short by a stop or crash of adwd ends with
# its one terminal event and is offered to the user (recover), never re-run behind
# the back of an operator who may have stopped the service because of it.
RETRYABLE_BY_DEFAULT = (
    "system.spawn",
    "system.killed",
    "system.internal",
    "workflow.heartbeat_lost",
)


class RetryPolicy(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """When a failed run is tried again on its own, with Temporal's fields.

    Attempt ``n`` (the first retry is attempt 2) waits
    ``min(initial_interval_s * backoff_coefficient ** (n - 2), maximum_interval_s)``.
    ``maximum_attempts`` counts the first run (1: never retried; 0: no limit).
    Only the classes in ``retryable`` are retried, never those in ``non_retryable``.
    """

    initial_interval_s: Annotated[float, Meta(ge=0)] = 1.0
    backoff_coefficient: Annotated[float, Meta(ge=1)] = 2.0
    maximum_interval_s: Annotated[float, Meta(ge=0)] = 60.0
    maximum_attempts: Annotated[int, Meta(ge=0)] = 3
    retryable: tuple[str, ...] = RETRYABLE_BY_DEFAULT
    non_retryable: tuple[str, ...] = ()

    def delay_before(self, attempt: int) -> float:
        """How long attempt ``attempt`` (2, 3, ...) waits after the failure before it."""
        exponent = max(0, attempt - 2)
        return min(self.initial_interval_s * self.backoff_coefficient**exponent,
                   self.maximum_interval_s)  # fmt: skip

    def retry_in(self, error_class: str, failed_attempt: int) -> float | None:
        """Seconds until the next attempt after ``failed_attempt`` failed with
        ``error_class``, or None when the failure is final."""
        if error_class in self.non_retryable or error_class not in self.retryable:
            return None
        if self.maximum_attempts and failed_attempt >= self.maximum_attempts:
            return None
        return self.delay_before(failed_attempt + 1)


class WorkflowSpec(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How one workflow type runs. Every string of argv, cwd and env may use
    the placeholders ``{python}``, ``{project_dir}``, ``{data_dir}``,
    ``{workflow_type}``, ``{issue_number}`` and ``{adw_id}``.

    ``stages`` are the board columns the workflow works through, in order: its
    card moves only forward through them, and on completion to ``done_stage``
    (default: the column after the last one). ``requires`` names stages an
    earlier run of the same adw_id must have completed: such a workflow is
    refused without the adw_id of a run that did. ``pass_stages`` hands the
    trigger's ``stages``/``config`` to the script as ``--stages a,b`` or
    ``--config <json>`` (the ADW orchestrator's convention).
    """

    argv: tuple[str, ...] = DEFAULT_ARGV
    cwd: str = "{project_dir}"
    env: dict[str, str] = {}
    # One attempt's limit (Temporal's start-to-close); ``timeout_s`` is its old name.
    start_to_close_s: Annotated[float, Meta(ge=0)] = 3600.0
    timeout_s: Annotated[float, Meta(ge=0)] | None = None
    # The whole run, from its first queueing through its retries (0: no limit).
    schedule_to_close_s: Annotated[float, Meta(ge=0)] = 0.0
    # No output and no progress for this long means the run hung (0: not watched).
    heartbeat_s: Annotated[float, Meta(ge=0)] = 0.0
    max_concurrent: int = 0  # 0: only the service-wide limit applies
    enabled: bool = True
    stages: tuple[str, ...] = ()
    done_stage: str = ""
    requires: tuple[str, ...] = ()
    pass_stages: bool = False
    retry: RetryPolicy | None = None  # None: the service's [retry] policy

    @property
    def attempt_timeout_s(self) -> float:
        """The limit of one attempt (``timeout_s`` wins where an old config sets it)."""
        return self.timeout_s if self.timeout_s is not None else self.start_to_close_s

    @property
    def completes_to(self) -> str:
        """The column a completed run leaves its card in ("": a workflow that owns
        no stage leaves the card where it is)."""
        if self.done_stage:
            return self.done_stage
        return next_stage(self.stages[-1]) if self.stages else ""


def _single(stage: str) -> WorkflowSpec:
    return WorkflowSpec(stages=(stage,), requires=("plan",))


# The ADW workflows the board offers (adws/adw_*.py in the ADW repository). Entry
# points (plan, patch, the composites starting with plan, the orchestrator) take a
# new adw_id; the others work on what an earlier plan of the same adw_id made.
DEFAULT_CATALOGUE: dict[str, WorkflowSpec] = {
    "adw_plan_iso": WorkflowSpec(stages=("plan",)),
    "adw_build_iso": _single("build"),
    "adw_test_iso": _single("test"),
    "adw_review_iso": _single("review"),
    "adw_document_iso": _single("document"),
    "adw_ship_iso": WorkflowSpec(stages=("pr",), requires=("plan",)),
    "adw_merge_iso": WorkflowSpec(
        argv=MERGE_ARGV, stages=("ready-to-merge",), done_stage="completed", requires=("plan",)
    ),
    "adw_patch_iso": WorkflowSpec(stages=("build",)),
    "adw_plan_build_iso": WorkflowSpec(stages=("plan", "build")),
    "adw_plan_build_test_iso": WorkflowSpec(stages=("plan", "build", "test")),
    "adw_plan_build_test_review_iso": WorkflowSpec(stages=("plan", "build", "test", "review")),
    "adw_plan_build_document_iso": WorkflowSpec(stages=("plan", "build", "document")),
    "adw_plan_build_review_iso": WorkflowSpec(stages=("plan", "build", "review")),
    "adw_sdlc_iso": WorkflowSpec(stages=("plan", "build", "test", "review", "document")),
    "adw_sdlc_ZTE_iso": WorkflowSpec(
        stages=("plan", "build", "test", "review", "document", "pr"), done_stage="completed"
    ),
    "adw_orchestrator": WorkflowSpec(
        stages=("plan", "build", "test", "review", "document"), pass_stages=True
    ),
}
DEFAULT_WORKFLOW_TYPES = tuple(DEFAULT_CATALOGUE)


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
    for field, stages in (("stages", spec.stages), ("requires", spec.requires)):
        unknown = [s for s in stages if s not in STAGES]
        if unknown:
            raise ConfigError(
                f"workflows.{name}.{field}: unknown stage(s) {unknown}; use board columns: "
                f"{', '.join(STAGES)}."
            )
    if spec.done_stage and spec.done_stage not in STAGES:
        raise ConfigError(
            f"workflows.{name}.done_stage: unknown stage {spec.done_stage!r}; use one of: "
            f"{', '.join(STAGES)}."
        )


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
    stages: list[str] | None = None,
    config: dict[str, Any] | None = None,
    timeout_s: float | None = None,
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
    argv = [a.format_map(values) for a in spec.argv]
    if spec.pass_stages:
        # The orchestrator's convention: the whole config wins over a bare stage list.
        if config:
            argv += ["--config", json.encode(config).decode()]
        elif stages:
            argv += ["--stages", ",".join(stages)]
    return LaunchPlan(
        argv=argv,
        cwd=spec.cwd.format_map(values),
        env=env,
        timeout_s=spec.attempt_timeout_s if timeout_s is None else timeout_s,
        logs_path=str(log),
        work_dir=str(work_dir),
        trigger_file=str(trigger_file),
    )
