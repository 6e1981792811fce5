"""The board's view of its ADWs (``GET /api/adws/list``, ``GET /api/adws``), pure.

The original server answered these from its own database (``adw_states``);
adwd answers them from its runs, folded from the log: one record per adw_id,
in the original's field names, from the runs of that adw_id (the latest run
says what the card is doing now).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from adwd.projections.runs import RunView

# Our run status -> the board's ADW status (pending, in_progress, completed, errored).
BOARD_STATUS = {
    "queued": "pending",
    "running": "in_progress",
    "completed": "completed",
    "failed": "errored",
}
ISSUE_CLASSES = frozenset({"chore", "bug", "feature", "patch"})


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


def adw_record(adw_id: str, runs: list[RunView]) -> dict[str, Any]:
    """One adw_id as the board's ADW list shows it (``runs`` oldest change first)."""
    latest = runs[-1]
    request = latest.request
    card = next((r.request.issue_json for r in reversed(runs) if r.request.issue_json), None)
    issue_type = next((r.request.issue_type for r in reversed(runs) if r.request.issue_type), None)
    number = next((r.request.issue_number for r in reversed(runs) if r.request.issue_number), "")
    body = (card.get("description") or card.get("body")) if isinstance(card, dict) else None
    moved = [r.stage for r in runs if r.stage]
    ended = [r.ended_ts for r in runs if r.ended_ts is not None]
    return {
        "adw_id": adw_id,
        "issue_number": number or None,
        "issue_title": card.get("title") if isinstance(card, dict) else None,
        "issue_body": body,
        "issue_class": issue_type if issue_type in ISSUE_CLASSES else None,
        "branch_name": None,
        "worktree_path": None,
        "current_stage": moved[-1] if moved else "backlog",
        "status": BOARD_STATUS.get(latest.status, latest.status),
        "is_stuck": False,
        "workflow_name": latest.key[1],
        "model_set": request.model_set,
        "data_source": "kanban" if card is not None or issue_type else "github",
        "issue_json": card,
        "created_at": _iso(runs[0].queued_ts),
        "updated_at": _iso(max(r.ended_ts or r.started_ts or r.queued_ts for r in runs)),
        "completed_at": _iso(max(ended)) if latest.status == "completed" and ended else None,
        "workflows": [r.key[1] for r in runs],
    }  # fmt: skip


def adw_records(
    views: Iterable[RunView], deleted: Mapping[str, int] | None = None
) -> list[dict[str, Any]]:
    """Every adw_id of ``views`` (in order of their last change, newest first); an
    adw_id deleted (``deleted``: adw_id -> the seq of its deletion) after its last
    run is left out."""
    by_adw: dict[str, list[RunView]] = {}
    for view in sorted(views, key=lambda v: v.last_seq):
        by_adw.setdefault(view.key[0], []).append(view)
    gone = deleted or {}
    records = [
        adw_record(adw_id, runs)
        for adw_id, runs in by_adw.items()
        if gone.get(adw_id, -1) < runs[-1].last_seq
    ]
    return list(reversed(records))


def matches(record: Mapping[str, Any], query: Mapping[str, str]) -> bool:
    """The filters of ``GET /api/adws``: ``status``, ``stage``, ``is_stuck``."""
    if "status" in query and record["status"] != query["status"]:
        return False
    if "stage" in query and record["current_stage"] != query["stage"]:
        return False
    return not ("is_stuck" in query and query["is_stuck"].lower() in ("true", "1"))
