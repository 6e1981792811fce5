#!/usr/bin/env python3
"""Plan stage: write ``plan.md`` for the issue into the run's work dir.

The plan records the issue number, why the run was triggered and which model set was asked for,
followed by a checklist that the later stages (build, test, review, document, ship) work through.
"""

from __future__ import annotations

from datetime import UTC, datetime

from _adw import context, exit_if_fail_requested, issue_label, log, progress, write_text

CHECKLIST = (
    "Build: generate and byte-compile the module",
    "Test: run the module's self-check in a subprocess",
    "Review: hash every file in the work dir",
    "Document: list the files and their sizes",
    "Ship: pack the work dir into ship.tar.gz",
)


def main() -> int:
    """Write plan.md and report progress; return the exit code."""
    ctx = context()
    progress(5, "Stage: plan", f"Planning {issue_label(ctx)} for adw {ctx.adw_id}")
    exit_if_fail_requested(ctx)

    log(f"workflow={ctx.workflow_type} model_set={ctx.model_set} work_dir={ctx.work_dir}")
    reason = ctx.trigger_reason or "(none given)"
    log(f"trigger reason: {reason}")
    progress(40, "Stage: plan", "Drafting checklist")

    lines = [
        f"# Plan for issue {issue_label(ctx)}",
        "",
        f"- ADW id: `{ctx.adw_id}`",
        f"- Issue: {ctx.issue_number or '(none)'}",
        f"- Trigger reason: {reason}",
        f"- Model set: {ctx.model_set}",
        f"- Planned at: {datetime.now(UTC).isoformat(timespec='seconds')}",
        "",
        "## Checklist",
        "",
        *(f"- [ ] {item}" for item in CHECKLIST),
        "",
    ]
    plan = write_text(ctx.work_dir / "plan.md", "\n".join(lines))
    log(f"wrote {plan} ({plan.stat().st_size} bytes, {len(CHECKLIST)} checklist items)")
    progress(100, "Stage: plan", "Wrote plan.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
