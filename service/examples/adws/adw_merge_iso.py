#!/usr/bin/env python3
"""Merge: ``adw_merge_iso.py <adw_id>``; records that the shipped work was merged."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime

from _adw import context, exit_if_fail_requested, fail, log, progress, write_text


def main() -> int:
    """Write merged.txt beside ship.tar.gz; return the exit code."""
    # Merge takes only the adw_id; the issue number comes from the environment.
    adw_id = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("ADW_ID", "")
    ctx = context([os.environ.get("ADW_ISSUE_NUMBER", ""), adw_id])
    progress(10, "Stage: ready-to-merge", f"Merging the work of adw {ctx.adw_id}")
    exit_if_fail_requested(ctx)
    shipped = ctx.work_dir / "ship.tar.gz"
    if not shipped.is_file():
        log(f"no {shipped.name} yet: merging the work dir as it is")
    note = write_text(ctx.work_dir / "merged.txt", f"merged {datetime.now(UTC).isoformat()}\n")
    log(f"wrote {note}")
    progress(100, "Stage: ready-to-merge", "Merged")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2:
        fail("usage: adw_merge_iso.py <adw_id>", code=2)
    raise SystemExit(main())
