"""The ADW state a run's scripts load: what adwd writes before it launches one.

The ADW scripts (``adw_modules/state.py``) load ``ADWState`` from
``<project_dir>/agents/<adw_id>/adw_state.json`` (with ``ADW_DB_ONLY=false``)
and decide their mode from its ``data_source`` (``adw_modules/kanban_mode.py``):
``kanban`` uses the card's ``issue_json`` and skips GitHub, ``github`` fetches
the issue. The original trigger server wrote that file before each launch;
adwd does too, with the same fields, so a board-only card is never run as a
GitHub issue.

:func:`merged_state` is the decision (pure: the trigger and what the file held
in, the new content and what changed out); :func:`read_state` and
:func:`write_state` are the file I/O around it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from adwd.events.domain import RunQueued

STATE_FILE = "adw_state.json"
# The fields the scripts' ADWStateData declares, with its defaults: a file adwd
# creates holds them all, as the scripts' own ADWState.save() writes it.
DEFAULTS: dict[str, Any] = {
    "adw_id": "",
    "issue_number": None,
    "branch_name": None,
    "plan_file": None,
    "issue_class": None,
    "worktree_path": None,
    "backend_port": None,
    "websocket_port": None,
    "frontend_port": None,
    "model_set": "base",
    "all_adws": [],
    "data_source": "github",
    "issue_json": None,
    "completed": False,
    "patch_file": None,
    "patch_history": [],
    "patch_source_mode": None,
}
# ADWStateData.issue_class is Literal["/chore", "/bug", "/feature"]: any other
# value makes the scripts' loader reject the whole file, so it is not written.
ISSUE_CLASSES = frozenset({"chore", "bug", "feature"})


LOADER_DIR = ("adws", "adw_modules")  # where the scripts' state.py lives, under their project


def has_loader(project_dir: str | Path) -> bool:
    """Whether ADW scripts that load this state live in ``project_dir``
    (``adws/adw_modules/``): elsewhere no one would read the file, and adwd
    writes none (the bundled examples, any other command)."""
    return Path(project_dir, *LOADER_DIR).is_dir()


def state_path(project_dir: str | Path, adw_id: str) -> Path:
    """Where the scripts look: ``<project_dir>/agents/<adw_id>/adw_state.json``."""
    return Path(project_dir) / "agents" / adw_id / STATE_FILE


def data_source(run: RunQueued) -> str:
    """``kanban`` when the board sent the card (``issue_json``) or its type, else ``github``."""
    return "kanban" if run.issue_json is not None or run.issue_type else "github"


def merged_state(
    run: RunQueued, existing: Mapping[str, Any] | None
) -> tuple[dict[str, Any], list[str]]:
    """The state to write for ``run``, and the names of the fields it changed.

    Created (``existing`` None): every field of the scripts' model, defaults
    for what the trigger does not say. Updated (a dependent workflow of an
    adw_id whose state exists): only what this trigger says replaces what the
    file holds; the rest, written by earlier workflows (branch, worktree, plan
    file...), stays. Two deliberate differences from the original server: an
    update without an issue number keeps the stored one, and an update with
    neither ``issue_json`` nor ``issue_type`` keeps the stored ``data_source``
    (a build triggered by adw_id alone does not turn a board card into a
    GitHub issue).
    """
    base = dict(DEFAULTS) if existing is None else dict(existing)
    update: dict[str, Any] = {"adw_id": run.adw_id, "model_set": run.model_set}
    if run.issue_number or existing is None:
        update["issue_number"] = run.issue_number or None
    if run.issue_type and run.issue_type.lower() in ISSUE_CLASSES:
        update["issue_class"] = f"/{run.issue_type.lower()}"
    if run.issue_json is not None:
        update["issue_json"] = run.issue_json
    if run.issue_json is not None or run.issue_type or existing is None:
        update["data_source"] = data_source(run)
    elif base.get("data_source") not in ("github", "kanban"):
        update["data_source"] = "github"  # a stored value the loader would reject
    changed = [k for k, v in update.items() if existing is None or base.get(k, ...) != v]
    base.update(update)
    return base, changed


def read_state(path: Path) -> dict[str, Any] | None:
    """The state a file holds, or None if there is none (absent, unreadable,
    not a JSON object: such a file is replaced, as the loader could not read it)."""
    try:
        data = msgspec.json.decode(path.read_bytes())
    except (OSError, msgspec.DecodeError):
        return None
    return data if isinstance(data, dict) else None


def write_state(path: Path, state: Mapping[str, Any]) -> None:
    """Write atomically (a temporary file renamed over it): a script that reads
    it meanwhile sees the old state or the new one, never half of one.

    Raises:
        OSError: the directory or file could not be written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    text = msgspec.json.format(msgspec.json.encode(state), indent=2)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".adw_state.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
