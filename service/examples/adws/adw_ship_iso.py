#!/usr/bin/env python3
"""Ship stage: pack the work dir into ``ship.tar.gz`` (excluding the archive itself).

Members are stored under ``<adw_id>/`` in sorted order; the archive is written to a temporary
file and renamed into place, so a cancelled run never leaves a truncated ``ship.tar.gz``.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from pathlib import Path

from _adw import (
    context,
    default_file_mode,
    exit_if_fail_requested,
    issue_label,
    log,
    progress,
    work_files,
)

ARCHIVE_NAME = "ship.tar.gz"


def main() -> int:
    """Write ship.tar.gz, print its size and return the exit code."""
    ctx = context()
    progress(5, "Stage: ready-to-merge", f"Shipping {issue_label(ctx)} for adw {ctx.adw_id}")
    exit_if_fail_requested(ctx)

    files = work_files(ctx, exclude=(ARCHIVE_NAME,))
    log(f"packing {len(files)} files from {ctx.work_dir}")
    progress(30, "Stage: ready-to-merge", f"Packing {len(files)} files")

    prefix = ctx.adw_id or "adw"
    fd, tmp_name = tempfile.mkstemp(dir=ctx.work_dir, prefix=f".{ARCHIVE_NAME}.", suffix=".tmp")
    try:
        os.fchmod(fd, default_file_mode())
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            for path in files:
                tar.add(path, arcname=f"{prefix}/{path.relative_to(ctx.work_dir).as_posix()}")
        archive = ctx.work_dir / ARCHIVE_NAME
        os.replace(tmp_name, archive)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    size = archive.stat().st_size
    log(f"wrote {archive}: {size} bytes")
    progress(100, "Stage: ready-to-merge", f"Wrote {ARCHIVE_NAME} ({size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
