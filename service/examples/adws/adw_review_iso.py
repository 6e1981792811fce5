#!/usr/bin/env python3
"""Review stage: fingerprint every file in the work dir and write ``review.md``.

Computes the sha256 of each file the earlier stages produced (skipping hidden files and the
review itself) and records the test verdict from ``test-report.json`` when there is one.
"""

from __future__ import annotations

import hashlib
import json

from _adw import context, exit_if_fail_requested, issue_label, log, progress, work_files, write_text

REVIEW_NAME = "review.md"


def main() -> int:
    """Hash the work dir's files, write review.md and return the exit code."""
    ctx = context()
    progress(5, "Stage: review", f"Reviewing {issue_label(ctx)} for adw {ctx.adw_id}")
    exit_if_fail_requested(ctx)

    files = work_files(ctx, exclude=(REVIEW_NAME,))
    log(f"hashing {len(files)} files under {ctx.work_dir}")
    rows = []
    for path in files:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        rel = path.relative_to(ctx.work_dir).as_posix()
        rows.append(f"| `{rel}` | {path.stat().st_size} | `{digest}` |")
    progress(50, "Stage: review", f"Hashed {len(files)} files")

    report_path = ctx.work_dir / "test-report.json"
    if report_path.is_file():
        try:
            passed = json.loads(report_path.read_text(encoding="utf-8")).get("passed")
        except (ValueError, AttributeError):
            passed = None
        if passed is True:
            verdict = "tests passed"
        elif passed is False:
            verdict = "tests FAILED"
        else:
            verdict = "unreadable report"
    else:
        verdict = "no test report (test stage not run)"
    log(f"test verdict: {verdict}")

    lines = [
        f"# Review for issue {issue_label(ctx)}",
        "",
        f"- ADW id: `{ctx.adw_id}`",
        f"- Test verdict: {verdict}",
        f"- Files reviewed: {len(files)}",
        "",
        "| File | Bytes | sha256 |",
        "| --- | ---: | --- |",
        *rows,
        "",
    ]
    write_text(ctx.work_dir / REVIEW_NAME, "\n".join(lines))
    log(f"wrote {ctx.work_dir / REVIEW_NAME}")
    progress(100, "Stage: review", f"Wrote {REVIEW_NAME}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
