"""Kanban stages: where a run puts its card.

A board's columns: backlog, plan, build, test, review, document,
ready-to-merge, pr, completed, errored. A single-stage ADW workflow moves its
card to its own stage when it starts, onwards to the next stage when it
completes, and to ``errored`` when it fails.
"""

from __future__ import annotations

STAGES = (
    "backlog", "plan", "build", "test", "review", "document",
    "ready-to-merge", "pr", "completed", "errored",
)  # fmt: skip

WORKFLOW_STAGE = {
    "adw_plan_iso": "plan",
    "adw_build_iso": "build",
    "adw_test_iso": "test",
    "adw_review_iso": "review",
    "adw_document_iso": "document",
    "adw_ship_iso": "pr",
}


def is_forward(current: str, target: str) -> bool:
    """Whether moving a card from ``current`` to ``target`` goes forward on the
    board. A card in ``errored`` (or an unknown column) may go anywhere: a new
    run picks it up again."""
    if current not in STAGES or current == "errored":
        return target != current
    if target not in STAGES or target == "errored":
        return target != current
    return STAGES.index(target) > STAGES.index(current)


def next_stage(stage: str) -> str:
    """The column after ``stage`` (``completed`` stays)."""
    order = STAGES[: STAGES.index("completed") + 1]
    if stage not in order:
        return stage
    return order[min(order.index(stage) + 1, len(order) - 1)]


def stage_of(workflow_type: str, status: str) -> str:
    """Where a run of this type and status puts its card."""
    own = WORKFLOW_STAGE.get(workflow_type, "backlog")
    if status == "failed":
        return "errored"
    if status == "completed":
        return next_stage(own) if workflow_type in WORKFLOW_STAGE else "completed"
    if status == "queued":
        return "backlog" if workflow_type not in WORKFLOW_STAGE else own
    return own
