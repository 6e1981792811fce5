"""Shared helpers for the example ADW scripts (standard library only).

The adwd service runs each workflow as ``<python> adws/<workflow_type>.py <issue_number> <adw_id>``
with the run's details in ``ADW_*`` environment variables. This module turns that contract into
a small API:

* :func:`context` reads the arguments and environment into a frozen :class:`AdwContext`.
* :func:`progress` prints one ``ADW-PROGRESS {...}`` line, which the service turns into a
  progress event for the run.
* :func:`log` prints an ordinary log line; :func:`fail` prints a reason to stderr and exits 1.
* :func:`fail_requested` / :func:`exit_if_fail_requested` implement the "#fail" test hook.
* :func:`write_text` writes a file atomically so a cancelled run never leaves half a file.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

PROGRESS_PREFIX = "ADW-PROGRESS "
FAIL_MARKER = "#fail"
FAIL_AT_MARKER = "#fail-at:"  # "#fail-at:test": a composite fails in its test stage only
STAGE_SCRIPTS = {
    "plan": "adw_plan_iso",
    "build": "adw_build_iso",
    "test": "adw_test_iso",
    "review": "adw_review_iso",
    "document": "adw_document_iso",
    "pr": "adw_ship_iso",
}


# Set by run_stages while a composite runs one of its stages: which one, and the
# share of the run's progress it reports in.
@dataclass(slots=True)
class _Composite:
    stage: str | None = None
    span: tuple[int, int] = (0, 100)


_RUNNING = _Composite()


@dataclass(frozen=True, slots=True)
class AdwContext:
    """Everything the service tells a workflow about the run it belongs to."""

    issue_number: str
    """Issue the run is for; may be the empty string."""
    adw_id: str
    """Identifier shared by every workflow run for the same piece of work."""
    workflow_type: str
    """Name of the script being run, e.g. ``adw_plan_iso``."""
    model_set: str
    """``base`` or ``heavy``."""
    trigger_reason: str
    """Free text saying why the run was started."""
    work_dir: Path
    """Private directory for this adw_id, shared by all its workflows; write outputs here."""


def context(argv: list[str] | None = None) -> AdwContext:
    """Build the run context from ``argv`` (default ``sys.argv``) and the ``ADW_*`` environment.

    The positional arguments ``<issue_number> <adw_id>`` win over ``ADW_ISSUE_NUMBER`` and
    ``ADW_ID`` when present. Exits with code 2 if ``ADW_WORK_DIR`` is unset or missing, since
    the scripts must never write into their current directory.
    """
    args = sys.argv[1:] if argv is None else argv
    env = os.environ
    issue_number = args[0] if len(args) >= 1 else env.get("ADW_ISSUE_NUMBER", "")
    adw_id = args[1] if len(args) >= 2 else env.get("ADW_ID", "")
    work_dir_text = env.get("ADW_WORK_DIR", "")
    if not work_dir_text:
        fail("ADW_WORK_DIR is not set; refusing to write into the current directory", code=2)
    work_dir = Path(work_dir_text).resolve()
    if not work_dir.is_dir():
        fail(f"ADW_WORK_DIR {work_dir} is not a directory", code=2)
    workflow_type = env.get("ADW_WORKFLOW_TYPE") or Path(sys.argv[0]).stem
    return AdwContext(
        issue_number=issue_number,
        adw_id=adw_id,
        workflow_type=workflow_type,
        model_set=env.get("ADW_MODEL_SET", "base"),
        trigger_reason=env.get("ADW_TRIGGER_REASON", ""),
        work_dir=work_dir,
    )


def progress(
    percent: int | None = None, step: str | None = None, message: str | None = None
) -> None:
    """Print one ``ADW-PROGRESS`` line to stdout and flush it.

    Fields left as ``None`` are omitted; ``percent`` is clamped to 0..100.
    """
    report: dict[str, int | str] = {}
    if percent is not None:
        low, high = _RUNNING.span  # a composite's stage reports within its share
        scaled = low + (high - low) * max(0, min(100, int(percent))) // 100
        report["progress_percent"] = scaled
    if step is not None:
        report["current_step"] = step
    if message is not None:
        report["message"] = message
    print(PROGRESS_PREFIX + json.dumps(report), flush=True)


def log(message: str) -> None:
    """Print an ordinary log line to stdout and flush it, keeping the log in order."""
    print(message, flush=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``message`` to stderr (after flushing stdout) and exit with ``code``."""
    sys.stdout.flush()
    print(message, file=sys.stderr, flush=True)
    raise SystemExit(code)


def fail_requested(ctx: AdwContext) -> bool:
    """True when the trigger reason contains ``#fail`` (a hook for exercising failed runs),
    or ``#fail-at:<stage>`` while a composite runs that stage."""
    reason = ctx.trigger_reason
    if FAIL_AT_MARKER in reason:
        wanted = (reason.split(FAIL_AT_MARKER, 1)[1].split() or [""])[0]
        return _RUNNING.stage == wanted
    return FAIL_MARKER in reason


def exit_if_fail_requested(ctx: AdwContext) -> None:
    """Exit with code 1 and an explanation on stderr if :func:`fail_requested` is true."""
    if fail_requested(ctx):
        fail(f"failing on request: trigger_reason contains {FAIL_MARKER}")


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (temporary file, then rename) and return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), default_file_mode())
            handle.write(text)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def default_file_mode() -> int:
    """Mode a plainly created file would get (0o666 minus the umask); mkstemp uses 0o600."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def work_files(ctx: AdwContext, *, exclude: tuple[str, ...] = ()) -> list[Path]:
    """Regular files under the work dir, sorted by relative path.

    Skips hidden files (including in-progress temporaries) and any relative path in ``exclude``.
    """
    files = []
    for path in sorted(ctx.work_dir.rglob("*")):
        rel = path.relative_to(ctx.work_dir)
        if any(part.startswith(".") for part in rel.parts) or rel.as_posix() in exclude:
            continue
        if path.is_file() and not path.is_symlink():
            files.append(path)
    return files


def issue_label(ctx: AdwContext) -> str:
    """``#<n>`` for the run's issue, or ``(no issue)`` when the issue number is empty."""
    return f"#{ctx.issue_number}" if ctx.issue_number else "(no issue)"


def run_stages(stages: list[str] | tuple[str, ...]) -> int:
    """Run the example stage scripts one after another in this process (a
    composite workflow): each reports ``Stage: <stage>`` and its progress
    within its share of the run; the first failing stage ends the run."""
    unknown = [s for s in stages if s not in STAGE_SCRIPTS]
    if not stages or unknown:
        fail(f"no stages to run, or unknown stages {unknown}; use: {', '.join(STAGE_SCRIPTS)}")
    for index, stage in enumerate(stages):
        module = importlib.import_module(STAGE_SCRIPTS[stage])
        _RUNNING.stage = stage
        _RUNNING.span = (100 * index // len(stages), 100 * (index + 1) // len(stages))
        progress(0, f"Stage: {stage}", f"{stage} stage ({index + 1} of {len(stages)})")
        code = int(module.main())
        if code:
            return code
    return 0
